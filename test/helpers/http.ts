import type { TestBroker } from './broker.js'

export interface ApiResponse<T = any> {
  readonly status: number
  readonly headers: Headers
  /** Parsed JSON body; undefined for an empty body. */
  readonly body: T
  readonly text: string
}

export interface ApiOptions {
  /** Sent as `Authorization: Bearer <token>` when given. */
  token?: string
  /** JSON-encoded unless it is already a string (to send malformed JSON). */
  body?: unknown
  headers?: Record<string, string>
}

/** A real HTTP request to the test broker's HTTP port (Node's fetch). */
export async function api<T = any> (broker: TestBroker, method: string, path: string, options: ApiOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  let body: string | undefined
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  const response = await fetch(`http://127.0.0.1:${broker.ports.http}${path}`, { method, headers, ...(body !== undefined && { body }) })
  const text = await response.text()
  return { status: response.status, headers: response.headers, body: (text === '' ? undefined : tryJson(text)) as T, text }
}

function tryJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
