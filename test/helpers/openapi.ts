import type { FastifyInstance } from 'fastify'

/** The parts of the OpenAPI document the route contract tests read. */
export interface OpenApiDocument {
  readonly openapi: string
  readonly paths: Record<string, Record<string, OpenApiOperation>>
}

export interface OpenApiOperation {
  readonly summary?: string
  readonly parameters?: ReadonlyArray<{ readonly in: string, readonly name: string, readonly required?: boolean }>
  readonly requestBody?: unknown
  readonly responses: Record<string, { readonly description: string, readonly content?: Record<string, { readonly schema?: object }> }>
}

const methods = ['get', 'put', 'post', 'patch', 'delete'] as const

/** `METHOD /path/{param}` of every operation the document lists. */
export function documentedOperations (doc: OpenApiDocument): string[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    methods.filter((method) => item[method] !== undefined).map((method) => `${method.toUpperCase()} ${path}`))
}

/**
 * `METHOD /path/{param}` of every route fastify answers, HEAD left out (fastify
 * adds one to every GET). fastify lists its routes only as find-my-way's radix
 * tree (`printRoutes()`): a route's path is the labels from the root down to
 * it, and its methods follow its label.
 */
export function routedOperations (app: FastifyInstance): string[] {
  const found: string[] = []
  const labels: string[] = []
  for (const line of app.printRoutes().split('\n')) {
    const match = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (match === null) continue
    labels.length = (match[1] as string).length / 4
    labels.push(match[2] as string)
    const path = labels.join('').replace(/:(\w+)/g, '{$1}').replace(/\*$/, '{*}')
    for (const method of match[3]?.split(', ') ?? []) {
      if (method !== 'HEAD') found.push(`${method} ${path}`)
    }
  }
  return found
}

/** A documented path with its `{name}` parameters filled in (each value URL-encoded). */
export function fillPath (template: string, values: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`no value for {${name}} in ${template}`)
    return encodeURIComponent(value)
  })
}
