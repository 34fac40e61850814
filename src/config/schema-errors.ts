import { Settings } from 'typebox/system'
import Value from 'typebox/value'
import type { TSchema } from 'typebox'

export interface SchemaProblem {
  /** JSON pointer of the value, `/storage/engine` */
  readonly instancePath: string
  readonly keyword: string
  readonly params: unknown
  readonly message: string
}

/**
 * The schema's errors for `value`, with each union (`anyOf`) described once by
 * what it allows: `must be one of leveldb, memory` where TypeBox reports one
 * "must be equal to constant" per allowed value and "must match a schema in
 * anyOf". Every error is collected (TypeBox stops at 8 by default, and one
 * enum of seven values takes eight).
 */
export function schemaProblems (schema: TSchema, value: unknown): SchemaProblem[] {
  const { maxErrors } = Settings.Get()
  Settings.Set({ maxErrors: 10_000 })
  let errors
  try {
    errors = Value.Errors(schema, value)
  } finally {
    Settings.Set({ maxErrors })
  }
  const unions = errors.filter((e) => e.keyword === 'anyOf').map((e) => e.schemaPath)
  const problems: SchemaProblem[] = []
  for (const error of errors) {
    // an alternative's own complaint is summed up by its union's
    if (unions.some((union) => error.schemaPath.startsWith(`${union}/anyOf/`))) continue
    if (error.keyword === 'anyOf') {
      const union = resolve(schema, error.schemaPath)
      const allowed = union?.anyOf?.map(describe)
      if (allowed !== undefined && !allowed.includes(undefined)) {
        problems.push({ ...error, message: `must be ${alternatives(union?.anyOf ?? [], allowed as string[])}` })
        continue
      }
    }
    problems.push(error)
  }
  return problems
}

interface SchemaNode {
  readonly const?: unknown
  readonly type?: string
  readonly minLength?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly pattern?: string
  readonly anyOf?: readonly SchemaNode[]
  readonly [key: string]: unknown
}

function alternatives (variants: readonly SchemaNode[], described: string[]): string {
  if (variants.every((v) => 'const' in v)) return described.length === 1 ? described[0] as string : `one of ${described.join(', ')}`
  if (described.length <= 2) return described.join(' or ')
  return `${described.slice(0, -1).join(', ')} or ${described[described.length - 1] as string}`
}

/** One alternative in words; undefined when it has no short description. */
function describe (node: SchemaNode): string | undefined {
  if ('const' in node) return typeof node.const === 'string' ? node.const : JSON.stringify(node.const)
  switch (node.type) {
    case 'null': return 'null'
    case 'boolean': return 'true or false'
    case 'string':
      if (node.pattern !== undefined) return `a string matching ${node.pattern}`
      return (node.minLength ?? 0) > 0 ? 'a non-empty string' : 'a string'
    case 'integer':
    case 'number': {
      const kind = node.type === 'integer' ? 'a whole number' : 'a number'
      if (node.minimum !== undefined && node.maximum !== undefined) return `${kind} from ${node.minimum} to ${node.maximum}`
      if (node.minimum !== undefined) return `${kind} of at least ${node.minimum}`
      if (node.maximum !== undefined) return `${kind} of at most ${node.maximum}`
      return kind
    }
    default: return undefined
  }
}

/** The schema a `#/properties/a/anyOf/1` path points at. */
function resolve (schema: TSchema, pointer: string): SchemaNode | undefined {
  let node: unknown = schema
  for (const part of pointer.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as Record<string, unknown>)[part.replaceAll('~1', '/').replaceAll('~0', '~')]
  }
  return node !== null && typeof node === 'object' ? node as SchemaNode : undefined
}
