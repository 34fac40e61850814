import type { OptionSpec } from './help.js'

/**
 * How the operator commands reach a running broker: its HTTP API with an
 * admin token, never its files (the broker may be another machine, or a
 * container). The token is sent only as a bearer header, never printed.
 */
export interface AdminConnection {
  /** base URL of the HTTP API, no trailing slash */
  readonly url: string
  readonly token: string
}

export const DEFAULT_URL = 'http://127.0.0.1:8080'

/** The options every operator command takes. */
export const connectionOptions: Readonly<Record<string, OptionSpec>> = {
  url: { type: 'string', value: 'url', help: `the broker's HTTP API (default: $HERALD_URL, else ${DEFAULT_URL})` },
  token: { type: 'string', value: 'jwt', help: 'an admin token (default: $HERALD_TOKEN); mint one on the broker\'s machine with `herald token --sub admin --role admin`' },
  json: { type: 'boolean', help: 'print the API\'s JSON answer instead of text' },
}

/** A usage problem: the message is printed with the command's usage and the exit code is 2. */
export class UsageError extends Error {}

/** The broker answered with an error: its status, stable code and message (exit code 1). */
export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(`${status} ${code}: ${message}`)
  }
}

export function adminConnection (values: Readonly<Record<string, string | boolean | undefined>>, env: NodeJS.ProcessEnv = process.env): AdminConnection {
  const token = (values.token as string | undefined) ?? env.HERALD_TOKEN
  if (token === undefined || token === '') throw new UsageError('an admin token is needed: --token <jwt> or $HERALD_TOKEN (mint one with `herald token --sub admin --role admin`)')
  const url = (values.url as string | undefined) ?? env.HERALD_URL ?? DEFAULT_URL
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError(`--url: not a URL: ${url}`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`--url: must be http:// or https://, not ${url}`)
  return { url: url.replace(/\/+$/, ''), token }
}

/**
 * One call of the admin API: resolves the parsed JSON body of a 2xx answer
 * (undefined for 204); rejects with ApiError for an error answer, and with a
 * one-line Error carrying a `code` when the broker cannot be reached.
 */
export async function adminRequest<T = any> (connection: AdminConnection, method: string, path: string, body?: unknown): Promise<T> {
  let response: Response
  try {
    response = await fetch(`${connection.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${connection.token}`,
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    const why = cause?.code ?? cause?.message ?? (err as Error).message
    throw Object.assign(new Error(`cannot reach the broker at ${connection.url}: ${why}`), { code: 'UNREACHABLE' })
  }
  const text = await response.text()
  let parsed: unknown
  try {
    parsed = text === '' ? undefined : JSON.parse(text)
  } catch {
    parsed = text
  }
  if (!response.ok) {
    const error = (parsed as { error?: { code?: string, message?: string } } | undefined)?.error
    throw new ApiError(response.status, error?.code ?? 'HTTP_ERROR', error?.message ?? (text.slice(0, 200) || response.statusText))
  }
  return parsed as T
}
