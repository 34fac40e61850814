/**
 * A fake of the two Google endpoints firebase-admin calls to send FCM
 * messages, speaking their wire protocol over HTTPS (HTTP/1.1):
 * - the OAuth2 token endpoint (`POST /token`, form body
 *   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`),
 *   which checks the RS256 assertion against the service account's public key;
 * - FCM HTTP v1 `POST /v1/projects/{projectId}/messages:send` with
 *   `Authorization: Bearer <access token it issued>`, answering
 *   `{name: "projects/{id}/messages/{n}"}` or Google-style error bodies.
 * firebase-admin 13's `sendEach` makes one `messages:send` call per message
 * (the old `/batch` multipart endpoint is gone from the SDK), so that is all
 * the fake serves.
 */
import { EventEmitter, once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { KeyObject } from 'node:crypto'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import jwt from 'jsonwebtoken'

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token'
const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError'
const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging'
const CLOUD_SCOPE = 'https://www.googleapis.com/auth/cloud-platform'

/** Failures the fake can answer a `messages:send` with, as FCM does. */
export type FcmFault =
  | 'UNREGISTERED' // 404, token no longer valid
  | 'INVALID_TOKEN' // 400 INVALID_ARGUMENT "The registration token is not a valid FCM registration token"
  | 'INVALID_ARGUMENT' // 400 INVALID_ARGUMENT about the message (google.rpc.BadRequest)
  | 'SENDER_ID_MISMATCH' // 403
  | 'PERMISSION_DENIED' // 403 without an FcmError: the service account lacks the FCM permission
  | 'THIRD_PARTY_AUTH_ERROR' // 401, APNs credentials missing at Firebase
  | 'QUOTA_EXCEEDED' // 429 RESOURCE_EXHAUSTED
  | 'UNAVAILABLE' // 503
  | 'INTERNAL' // 500
  | 'BAD_GATEWAY' // 502 with an HTML body, as a proxy in front of FCM would answer

export type Times = 'once' | 'always' | number

export interface FaultOptions {
  /** Seconds, sent as `Retry-After`. */
  readonly retryAfter?: number
}

export interface TokenFault {
  readonly status: number
  /** OAuth2 `error`; default `invalid_grant` for 4xx, `internal_failure` for 5xx. */
  readonly error?: string
}

export interface FakeFcmOptions {
  readonly projectId: string
  /** `client_email` of the service account: the assertion's `iss`. */
  readonly clientEmail: string
  /** Public half of the service account's key: assertions are verified with it. */
  readonly publicKey: KeyObject | string
  /** Token endpoint URL the assertion's `aud` must name and whose path is served (default Google's). */
  readonly tokenUri?: string
  readonly certFile?: string
  readonly keyFile?: string
  /** Keep every `messages:send` request in `messages` (default true). False for long load runs: count with `onMessage`. */
  readonly recordMessages?: boolean
  /** Called with every answered `messages:send` request, in answer order. */
  readonly onMessage?: (message: RecordedMessage) => void
}

export interface RecordedMessage {
  /** `message.token` of the request ('' when absent). */
  readonly token: string
  /** `message` of the request body, as sent. */
  readonly message: Record<string, unknown>
  readonly validateOnly: boolean
  readonly headers: IncomingHttpHeaders
  readonly path: string
  /** Status the fake answered. */
  readonly status: number
}

export interface RecordedTokenRequest {
  readonly headers: IncomingHttpHeaders
  readonly grantType: string | null
  /** Claims of a verified assertion; null when verification failed. */
  readonly claims: jwt.JwtPayload | null
  /** Header of the assertion as sent (alg, kid...). */
  readonly header: jwt.JwtHeader | null
  readonly status: number
  readonly accessToken: string | null
}

export interface FakeFcm {
  /** `https://localhost:<port>`: the value for `push.fcm.endpoint`. */
  readonly url: string
  readonly port: number
  readonly caFile: string
  /** Every `messages:send` request, in arrival order (empty with `recordMessages: false`). */
  readonly messages: RecordedMessage[]
  /** `messages:send` requests answered so far, recorded or not. */
  readonly answered: number
  /** Every token endpoint request, in arrival order. */
  readonly tokenRequests: RecordedTokenRequest[]
  /** Access tokens the fake issued; `messages:send` accepts only these. */
  readonly accessTokens: ReadonlySet<string>
  /** Answer requests for `token` with `fault` (`times`: once, always, or a count). A later script replaces an earlier one. */
  script (token: string, fault: FcmFault, times?: Times, options?: FaultOptions): void
  /** Make the token endpoint fail. */
  scriptTokenEndpoint (fault: TokenFault, times?: Times): void
  clearScripts (): void
  /** Resolves once at least `n` `messages:send` requests have been answered. */
  waitForMessages (n: number): Promise<RecordedMessage[]>
  /** Resolves once at least `n` token requests have been recorded. */
  waitForTokenRequests (n: number): Promise<RecordedTokenRequest[]>
  close (): Promise<void>
}

interface Scripted<T> { value: T, remaining: number, options: FaultOptions }

const remainingOf = (times: Times): number => times === 'always' ? Infinity : times === 'once' ? 1 : times

export async function startFakeFcm (options: FakeFcmOptions): Promise<FakeFcm> {
  const certFile = options.certFile ?? fixture('cert.pem')
  const keyFile = options.keyFile ?? fixture('key.pem')
  const tokenUri = options.tokenUri ?? GOOGLE_TOKEN_URL
  const tokenPath = new URL(tokenUri).pathname
  const sendPath = `/v1/projects/${options.projectId}/messages:send`
  const events = new EventEmitter()
  events.setMaxListeners(0)
  const messages: RecordedMessage[] = []
  const tokenRequests: RecordedTokenRequest[] = []
  const accessTokens = new Set<string>()
  const scripts = new Map<string, Scripted<FcmFault>>()
  let tokenScript: Scripted<TokenFault> | undefined
  let sent = 0
  let answered = 0
  const record = options.recordMessages ?? true

  const take = <T>(s: Scripted<T> | undefined): Scripted<T> | undefined => {
    if (s === undefined || s.remaining <= 0) return undefined
    s.remaining -= 1
    return s
  }

  const handleToken = (req: IncomingMessage, res: ServerResponse, body: string): void => {
    const form = new URLSearchParams(body)
    const grantType = form.get('grant_type')
    const assertion = form.get('assertion') ?? ''
    let claims: jwt.JwtPayload | null = null
    let header: jwt.JwtHeader | null = null
    let problem: string | null = null
    if (!String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) problem = 'Bad Request'
    else if (grantType !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') problem = 'Invalid grant_type'
    else {
      try {
        const decoded = jwt.verify(assertion, options.publicKey, {
          algorithms: ['RS256'], issuer: options.clientEmail, audience: tokenUri, complete: true,
        })
        header = decoded.header
        claims = typeof decoded.payload === 'string' ? null : decoded.payload
        const scopes = String(claims?.scope ?? '').split(' ')
        if (claims === null || !(scopes.includes(FCM_SCOPE) || scopes.includes(CLOUD_SCOPE))) problem = 'Invalid scope'
        else if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number' || claims.exp - claims.iat > 3600) problem = 'Invalid JWT: Token must be a short-lived token (60 minutes)'
      } catch {
        problem = 'Invalid JWT Signature.'
      }
    }
    const fault = problem === null ? take(tokenScript) : undefined
    let status: number
    let accessToken: string | null = null
    if (problem !== null) {
      status = 400
      json(res, status, { error: 'invalid_grant', error_description: problem })
    } else if (fault !== undefined) {
      status = fault.value.status
      json(res, status, {
        error: fault.value.error ?? (status >= 500 ? 'internal_failure' : 'invalid_grant'),
        error_description: 'scripted failure',
      })
    } else {
      status = 200
      accessToken = `ya29.fake-${randomBytes(12).toString('hex')}`
      accessTokens.add(accessToken)
      json(res, status, { access_token: accessToken, expires_in: 3600, token_type: 'Bearer' })
    }
    tokenRequests.push({ headers: req.headers, grantType, claims, header, status, accessToken })
    events.emit('token')
  }

  const handleSend = (req: IncomingMessage, res: ServerResponse, body: string): void => {
    const parsed = parseJson(body) as { message?: unknown, validate_only?: unknown } | null
    const message = (parsed !== null && typeof parsed === 'object' && parsed.message !== null && typeof parsed.message === 'object')
      ? parsed.message as Record<string, unknown>
      : {}
    const token = typeof message.token === 'string' ? message.token : ''
    const auth = req.headers.authorization ?? ''
    const bearer = auth.startsWith('Bearer ') ? auth.slice(7) : ''
    const answer = (status: number): void => {
      const recorded: RecordedMessage = { token, message, validateOnly: parsed?.validate_only === true, headers: req.headers, path: req.url ?? '', status }
      answered++
      if (record) messages.push(recorded)
      options.onMessage?.(recorded)
      events.emit('message')
    }

    if (!accessTokens.has(bearer)) {
      json(res, 401, googleError(401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.', 'UNAUTHENTICATED'))
      return answer(401)
    }
    if (parsed === null || typeof parsed !== 'object') {
      json(res, 400, googleError(400, 'Invalid JSON payload received.', 'INVALID_ARGUMENT'))
      return answer(400)
    }
    const invalid = validateMessage(message)
    if (invalid !== null) {
      json(res, 400, googleError(400, invalid, 'INVALID_ARGUMENT', [{ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message', description: invalid }] }]))
      return answer(400)
    }
    const fault = take(scripts.get(token))
    if (fault !== undefined) {
      const status = sendFault(res, fault.value, options.projectId, fault.options)
      return answer(status)
    }
    sent += 1
    json(res, 200, { name: `projects/${options.projectId}/messages/${sent}` })
    answer(200)
  }

  const server: Server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const path = (req.url ?? '').split('?')[0]
      if (req.method === 'POST' && path === tokenPath) return handleToken(req, res, body)
      if (req.method === 'POST' && path === sendPath) return handleSend(req, res, body)
      if (req.method === 'POST' && /^\/v1\/projects\/[^/]+\/messages:send$/.test(path ?? '')) {
        // Another project: FCM answers with an IAM denial.
        return json(res, 403, googleError(403, `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${path?.split('/')[3] ?? ''}' (or it may not exist).`, 'PERMISSION_DENIED'))
      }
      json(res, 404, googleError(404, 'Not found', 'NOT_FOUND'))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port

  const waitFor = async <T>(list: T[], count: () => number, event: string, n: number): Promise<T[]> => {
    if (count() >= n) return list
    return await new Promise((resolve) => {
      const check = (): void => {
        if (count() < n) return
        events.off(event, check)
        resolve(list)
      }
      events.on(event, check)
    })
  }

  return {
    url: `https://localhost:${port}`,
    port,
    caFile: certFile,
    messages,
    get answered () { return answered },
    tokenRequests,
    accessTokens,
    script (token, fault, times = 'always', faultOptions = {}) {
      scripts.set(token, { value: fault, remaining: remainingOf(times), options: faultOptions })
    },
    scriptTokenEndpoint (fault, times = 'always') {
      tokenScript = { value: fault, remaining: remainingOf(times), options: {} }
    },
    clearScripts () {
      scripts.clear()
      tokenScript = undefined
    },
    waitForMessages: async (n) => await waitFor(messages, () => answered, 'message', n),
    waitForTokenRequests: async (n) => await waitFor(tokenRequests, () => tokenRequests.length, 'token', n),
    async close () {
      const closed = once(server, 'close')
      server.close()
      server.closeAllConnections()
      await closed
    },
  }
}

/** The checks FCM makes that firebase-admin's own validation would not catch first. */
function validateMessage (message: Record<string, unknown>): string | null {
  const targets = ['token', 'topic', 'condition'].filter((k) => typeof message[k] === 'string' && message[k] !== '')
  if (targets.length !== 1) return 'Exactly one of token, topic or condition must be set.'
  const data = message.data
  if (data !== undefined) {
    if (data === null || typeof data !== 'object') return "Invalid value at 'message.data'"
    for (const [k, v] of Object.entries(data)) {
      if (typeof v !== 'string') return `Invalid value at 'message.data[${k}].value' (TYPE_STRING)`
      if (k === 'from' || k === 'message_type' || /^(google|gcm)/i.test(k)) return `Invalid data key: ${k}`
    }
  }
  const android = message.android as Record<string, unknown> | undefined
  if (android !== undefined) {
    if (android.ttl !== undefined) {
      const m = /^(\d+)(\.\d{1,9})?s$/.exec(String(android.ttl))
      if (m === null || Number(m[1]) > 2_419_200) return "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"
    }
    if (android.priority !== undefined && !['high', 'normal'].includes(String(android.priority).toLowerCase())) {
      return "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority)"
    }
  }
  const size = Buffer.byteLength(JSON.stringify({ notification: message.notification, data: message.data }), 'utf8')
  if (size > 4096) return 'Android message is too big'
  return null
}

function sendFault (res: ServerResponse, fault: FcmFault, projectId: string, options: FaultOptions): number {
  const headers: Record<string, string> = options.retryAfter !== undefined ? { 'retry-after': String(options.retryAfter) } : {}
  const fcm = (errorCode: string): object[] => [{ '@type': FCM_ERROR_TYPE, errorCode }]
  switch (fault) {
    case 'UNREGISTERED':
      return json(res, 404, googleError(404, 'Requested entity was not found.', 'NOT_FOUND', fcm('UNREGISTERED')), headers)
    case 'INVALID_TOKEN':
      return json(res, 400, googleError(400, 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT', fcm('INVALID_ARGUMENT')), headers)
    case 'INVALID_ARGUMENT':
      return json(res, 400, googleError(400, "Invalid value at 'message.android.collapse_key'", 'INVALID_ARGUMENT', [
        { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.android.collapse_key', description: 'Invalid value' }] },
      ]), headers)
    case 'SENDER_ID_MISMATCH':
      return json(res, 403, googleError(403, 'SenderId mismatch', 'PERMISSION_DENIED', fcm('SENDER_ID_MISMATCH')), headers)
    case 'PERMISSION_DENIED':
      return json(res, 403, googleError(403, `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${projectId}' (or it may not exist).`, 'PERMISSION_DENIED', [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'IAM_PERMISSION_DENIED', domain: 'cloudresourcemanager.googleapis.com' },
      ]), headers)
    case 'THIRD_PARTY_AUTH_ERROR':
      return json(res, 401, googleError(401, 'Auth error from APNS or Web Push Service', 'UNAUTHENTICATED', fcm('THIRD_PARTY_AUTH_ERROR')), headers)
    case 'QUOTA_EXCEEDED':
      return json(res, 429, googleError(429, 'Quota exceeded for quota metric \'Send requests\'.', 'RESOURCE_EXHAUSTED', fcm('QUOTA_EXCEEDED')), headers)
    case 'UNAVAILABLE':
      return json(res, 503, googleError(503, 'The service is currently unavailable.', 'UNAVAILABLE', fcm('UNAVAILABLE')), headers)
    case 'INTERNAL':
      return json(res, 500, googleError(500, 'Internal error encountered.', 'INTERNAL', fcm('INTERNAL')), headers)
    case 'BAD_GATEWAY':
      res.writeHead(502, { 'content-type': 'text/html; charset=UTF-8', ...headers })
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>')
      return 502
  }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

function googleError (code: number, message: string, status: string, details?: object[]): object {
  return { error: { code, message, status, ...(details !== undefined ? { details } : {}) } }
}

function json (res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): number {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
  return status
}
