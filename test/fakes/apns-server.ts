/**
 * A local APNs provider API: HTTP/2 over TLS, checking what APNs checks and answering
 * the way APNs answers, so tests drive the real node-apn client.
 * Status codes and reasons: Apple, "Handling notification responses from APNs";
 * headers: "Sending notification requests to APNs".
 */
import { createPublicKey, randomUUID, verify, type KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { constants, createSecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))

/** APNs' payload limit for everything but VoIP (5120). */
export const APNS_PAYLOAD_LIMIT = 4096
const PUSH_TYPES = new Set(['alert', 'background', 'location', 'voip', 'complication', 'fileprovider', 'mdm', 'liveactivity', 'pushtotalk', 'widgets'])
/** Topic suffixes a key for bundle id X may push to besides X itself. */
const TOPIC_SUFFIXES = ['', '.voip', '.complication', '.pushkit.fileprovider', '.push-type.liveactivity', '.push-type.pushtotalk', '.push-type.location', '.push-type.widgets']
/** APNs refuses provider tokens older than one hour. */
const PROVIDER_TOKEN_MAX_AGE_SEC = 3600

export interface FakeApnsOptions {
  /** Public half of the provider's .p8 key (PEM or KeyObject). */
  readonly publicKey: KeyObject | string | Buffer
  readonly keyId: string
  readonly teamId: string
  /** Bundle ids this key may push to; their push-type suffixes (`.voip`, …) are allowed too. */
  readonly topics: readonly string[]
  /** SETTINGS_MAX_CONCURRENT_STREAMS once authenticated (default 1000, what APNs announces). */
  readonly maxConcurrentStreams?: number
  /**
   * Apple: "APNs allows only one stream until you post a request with a valid
   * authentication token." Default true: a new connection announces 1 stream and
   * raises the limit after the first request whose JWT verifies.
   */
  readonly oneStreamUntilAuthenticated?: boolean
  /**
   * Remember provider tokens that verified, by their exact text, until they expire
   * (iat + 1 h). APNs accepts one token for up to an hour and providers send the same
   * one on every request, so a load run need not spend an ES256 verification per
   * request in the fake. Default false: every request is verified in full. A token that
   * fails verification is never remembered, so it is refused every time.
   */
  readonly cacheProviderTokens?: boolean
  /** Keep every request in `requests` (default true). False for long load runs: count with `onRequest`. */
  readonly recordRequests?: boolean
  /** Called with every answered request, in answer order. */
  readonly onRequest?: (request: FakeApnsRequest) => void
  /** TLS certificate and key files (default: test/fixtures/tls, found from the sources). */
  readonly certFile?: string
  readonly keyFile?: string
  /** The clock, ms since the epoch (default Date.now): provider token ages are measured with it. */
  readonly now?: () => number
}

/**
 * A scripted answer for one device token, used after the request passed every check.
 * `times`: how many requests it answers (default: all of them).
 * `reset`: no HTTP answer at all; the stream is reset (RST_STREAM) or the whole connection dropped.
 */
export type FakeApnsReply =
  | { readonly status: number, readonly reason?: string, readonly retryAfter?: number, readonly times?: number }
  | { readonly reset: 'stream' | 'session', readonly times?: number }

export interface FakeApnsRequest {
  /** The device token from the path ('' when the path is not /3/device/…). */
  readonly token: string
  readonly method: string
  readonly path: string
  /** Lower-case names, pseudo-headers included. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** The parsed body, undefined when it is not JSON. */
  readonly json: unknown
  /** Which HTTP/2 connection carried it, numbered from 1 in accept order. */
  readonly session: number
  /** What the fake answered (0: reset). */
  readonly status: number
  readonly reason: string | null
}

export interface FakeApns {
  readonly host: '127.0.0.1'
  readonly port: number
  /** Every request, in the order they were answered (empty with `recordRequests: false`). */
  readonly requests: readonly FakeApnsRequest[]
  /** Requests answered so far, recorded or not. */
  readonly answered: number
  /** HTTP/2 connections accepted so far. */
  readonly sessions: number
  respond (token: string, reply: FakeApnsReply): void
  /** Resolves with the (recorded) requests once at least `n` have been answered. */
  waitForRequests (n: number): Promise<readonly FakeApnsRequest[]>
  close (): Promise<void>
}

interface Answer { readonly status: number, readonly reason: string | null, readonly retryAfter?: number, readonly reset?: 'stream' | 'session' }

export async function startFakeApns (options: FakeApnsOptions): Promise<FakeApns> {
  const publicKey = typeof options.publicKey === 'string' || Buffer.isBuffer(options.publicKey)
    ? createPublicKey(options.publicKey)
    : options.publicKey
  const maxStreams = options.maxConcurrentStreams ?? 1000
  const oneStreamFirst = options.oneStreamUntilAuthenticated ?? true
  const authenticated = new WeakSet<ServerHttp2Session>()
  const now = options.now ?? Date.now
  const record = options.recordRequests ?? true
  /** authorization header → iat of a provider token that verified (cacheProviderTokens) */
  const verified = new Map<string, number>()
  const server = createSecureServer({
    key: readFileSync(options.keyFile ?? fixture('key.pem')),
    cert: readFileSync(options.certFile ?? fixture('cert.pem')),
    settings: { maxConcurrentStreams: oneStreamFirst ? 1 : maxStreams },
  })
  const requests: FakeApnsRequest[] = []
  const scripts = new Map<string, Array<{ reply: FakeApnsReply, left: number }>>()
  const waiters: Array<{ n: number, resolve: (requests: readonly FakeApnsRequest[]) => void }> = []
  const sessionIds = new WeakMap<ServerHttp2Session, number>()
  const open = new Set<ServerHttp2Session>()
  let sessionCount = 0
  let answered = 0

  let closing = false
  server.on('session', (session) => {
    // a connection still in its TLS handshake when close() ran arrives late: end it too
    if (closing) { session.destroy(); return }
    sessionIds.set(session, ++sessionCount)
    open.add(session)
    session.on('close', () => open.delete(session))
    // a client going away mid-request is not the test's failure
    session.on('error', () => {})
  })

  const scripted = (token: string): FakeApnsReply | undefined => {
    const queue = scripts.get(token)
    const head = queue?.[0]
    if (queue === undefined || head === undefined) return undefined
    if (--head.left <= 0) queue.shift()
    return head.reply
  }

  /** null when the provider token is valid and fresh, else APNs' 403 reason. */
  const authenticate = (authorization: string | undefined): string | null => {
    let iat = authorization === undefined ? undefined : verified.get(authorization)
    if (iat === undefined) {
      const result = verifyProviderToken(authorization, publicKey, options)
      if (typeof result === 'string') return result
      iat = result.iat
      if (options.cacheProviderTokens === true && authorization !== undefined) {
        // providers renew their token about hourly; a client minting one per request must not grow this forever
        if (verified.size >= 1000) verified.clear()
        verified.set(authorization, iat)
      }
    }
    if (now() / 1000 - iat > PROVIDER_TOKEN_MAX_AGE_SEC) {
      if (authorization !== undefined) verified.delete(authorization)
      return 'ExpiredProviderToken'
    }
    return null
  }

  /** The request's answer when a check fails, null when it passes; `json` is the parsed body. */
  const check = (session: ServerHttp2Session | undefined, headers: IncomingHttpHeaders, token: string | null, body: Buffer, json: unknown): Answer | null => {
    if (headers[':method'] !== 'POST') return { status: 405, reason: 'MethodNotAllowed' }
    if (token === null) return { status: 404, reason: 'BadPath' }
    const auth = authenticate(headers.authorization)
    if (auth !== null) return { status: 403, reason: auth }
    if (session !== undefined && !authenticated.has(session)) {
      authenticated.add(session)
      if (oneStreamFirst && !session.destroyed) session.settings({ maxConcurrentStreams: maxStreams })
    }
    if (token === '') return { status: 400, reason: 'MissingDeviceToken' }
    if (!/^(?:[0-9a-f]{2}){32,100}$/i.test(token)) return { status: 400, reason: 'BadDeviceToken' }
    const topic = headers['apns-topic']
    if (typeof topic !== 'string' || topic === '') return { status: 400, reason: 'MissingTopic' }
    if (!options.topics.some((allowed) => TOPIC_SUFFIXES.some((suffix) => topic === allowed + suffix))) return { status: 400, reason: 'TopicDisallowed' }
    const pushType = headers['apns-push-type']
    if (typeof pushType !== 'string' || !PUSH_TYPES.has(pushType)) return { status: 400, reason: 'InvalidPushType' }
    const priority = headers['apns-priority']
    if (priority !== undefined && !['1', '5', '10'].includes(String(priority))) return { status: 400, reason: 'BadPriority' }
    const expiration = headers['apns-expiration']
    if (expiration !== undefined && !/^\d+$/.test(String(expiration))) return { status: 400, reason: 'BadExpirationDate' }
    const collapseId = headers['apns-collapse-id']
    if (collapseId !== undefined && Buffer.byteLength(String(collapseId)) > 64) return { status: 400, reason: 'BadCollapseId' }
    const apnsId = headers['apns-id']
    if (apnsId !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(String(apnsId))) return { status: 400, reason: 'BadMessageId' }
    if (body.length === 0) return { status: 400, reason: 'PayloadEmpty' }
    if (body.length > APNS_PAYLOAD_LIMIT) return { status: 413, reason: 'PayloadTooLarge' }
    // APNs has no reason code of its own for a body that is not a JSON object
    if (json === undefined) return { status: 400, reason: 'BadPayload' }
    return null
  }

  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('error', () => {})
    stream.on('end', () => {
      const body = Buffer.concat(chunks)
      const path = String(headers[':path'] ?? '')
      const match = /^\/3\/device\/([^/?]*)$/.exec(path)
      const token = match === null ? null : decodeURIComponent(match[1] ?? '')
      const text = body.toString('utf8')
      const json = parseJson(text)
      let answer = check(stream.session as ServerHttp2Session | undefined, headers, token, body, json)
      if (answer === null) {
        const reply = token === null ? undefined : scripted(token)
        if (reply === undefined) answer = { status: 200, reason: null }
        else if ('reset' in reply) answer = { status: 0, reason: null, reset: reply.reset }
        else answer = { status: reply.status, reason: reply.reason ?? null, ...(reply.retryAfter !== undefined && { retryAfter: reply.retryAfter }) }
      }
      const request: FakeApnsRequest = {
        token: token ?? '',
        method: String(headers[':method']),
        path,
        headers: flatten(headers),
        body: text,
        json,
        session: sessionIds.get(stream.session as ServerHttp2Session) ?? 0,
        status: answer.status,
        reason: answer.reason,
      }
      answered++
      if (record) requests.push(request)
      options.onRequest?.(request)
      for (const waiter of [...waiters]) {
        if (answered >= waiter.n) {
          waiters.splice(waiters.indexOf(waiter), 1)
          waiter.resolve(requests.slice())
        }
      }
      reply(stream, headers, answer)
    })
  })

  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo

  return {
    host: '127.0.0.1',
    port,
    requests,
    get answered () { return answered },
    get sessions () { return sessionCount },
    respond (token, reply) {
      let queue = scripts.get(token)
      if (queue === undefined) scripts.set(token, queue = [])
      queue.push({ reply, left: reply.times ?? Infinity })
    },
    async waitForRequests (n) {
      if (answered >= n) return requests.slice()
      return await new Promise((resolve) => waiters.push({ n, resolve }))
    },
    async close () {
      closing = true
      const closed = once(server, 'close')
      server.close()
      for (const session of open) session.destroy()
      await closed
    },
  }
}

function reply (stream: ServerHttp2Stream, requestHeaders: IncomingHttpHeaders, answer: Answer): void {
  if (stream.destroyed) return
  if (answer.reset === 'stream') { stream.close(constants.NGHTTP2_INTERNAL_ERROR); return }
  if (answer.reset === 'session') { stream.session?.destroy(); return }
  const apnsId = typeof requestHeaders['apns-id'] === 'string' ? requestHeaders['apns-id'] : randomUUID()
  const headers: Record<string, string | number> = { ':status': answer.status, 'apns-id': apnsId }
  if (answer.status === 200) {
    stream.respond(headers, { endStream: true })
    return
  }
  if (answer.retryAfter !== undefined) headers['retry-after'] = answer.retryAfter
  headers['content-type'] = 'application/json'
  stream.respond(headers)
  // 410 answers carry the time APNs learnt the token was gone (ms since the epoch)
  stream.end(JSON.stringify(answer.status === 410 ? { reason: answer.reason, timestamp: Date.now() } : { reason: answer.reason }))
}

/** The token's iat when its signature and claims are valid (its age is the caller's check), else APNs' 403 reason. */
function verifyProviderToken (authorization: string | undefined, publicKey: KeyObject, options: FakeApnsOptions): string | { readonly iat: number } {
  if (authorization === undefined) return 'MissingProviderToken'
  const match = /^bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/i.exec(authorization)
  if (match === null) return 'InvalidProviderToken'
  const [, head = '', claims = '', signature = ''] = match
  const header = parseJson(Buffer.from(head, 'base64url').toString('utf8')) as Record<string, unknown> | undefined
  const payload = parseJson(Buffer.from(claims, 'base64url').toString('utf8')) as Record<string, unknown> | undefined
  if (header?.alg !== 'ES256' || payload === undefined) return 'InvalidProviderToken'
  // JWS ES256 signatures are r || s, not DER
  const valid = verify('sha256', Buffer.from(`${head}.${claims}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'))
  if (!valid) return 'InvalidProviderToken'
  if (header.kid !== options.keyId || payload.iss !== options.teamId) return 'InvalidProviderToken'
  if (typeof payload.iat !== 'number') return 'InvalidProviderToken'
  return { iat: payload.iat }
}

function flatten (headers: IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : String(value)
  }
  return flat
}

function parseJson (text: string): unknown {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined
  } catch {
    return undefined
  }
}
