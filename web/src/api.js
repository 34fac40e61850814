// Every call the console makes goes through here: the admin JWT from
// sessionStorage (never a cookie, never the URL) as Authorization: Bearer.

const KEY = 'herald.adminToken'

export function storedToken () {
  return sessionStorage.getItem(KEY)
}

export function storeToken (token) {
  sessionStorage.setItem(KEY, token)
}

export function forgetToken () {
  sessionStorage.removeItem(KEY)
}

/** An answer that is not 2xx: Herald's error body `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor (status, code, message) {
    super(`${status} ${code}: ${message}`)
    this.status = status
    this.code = code
  }
}

// the app shows the sign-in page again when a call is refused for its token
let onRefused = () => {}
export function whenRefused (handler) {
  onRefused = handler
}

/** Calls the API; resolves the JSON answer (null for 204) or throws ApiError. */
export async function call (method, path, body, token = storedToken()) {
  const headers = { authorization: `Bearer ${token ?? ''}` }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'omit', cache: 'no-store' })
  const text = await response.text()
  const json = text === '' ? null : JSON.parse(text)
  if (!response.ok) {
    const error = new ApiError(response.status, json?.error?.code ?? 'HTTP_ERROR', json?.error?.message ?? response.statusText)
    if (response.status === 401 || response.status === 403) onRefused(error)
    throw error
  }
  return json
}

/** A query string of the defined values. */
export function query (params) {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(key, String(value))
  const text = search.toString()
  return text === '' ? '' : `?${text}`
}

export const enc = encodeURIComponent
