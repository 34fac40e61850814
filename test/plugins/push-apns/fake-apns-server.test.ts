/**
 * The APNs fake itself, driven by a bare HTTP/2 client: it must refuse what APNs refuses,
 * or the sender tests prove nothing.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import { fileURLToPath } from 'node:url'
import jwt from 'jsonwebtoken'
import t, { type Test } from 'tap'
import { startFakeApns, type FakeApns, type FakeApnsOptions, type FakeApnsRequest } from '../../fakes/apns-server.js'

const CA = readFileSync(fileURLToPath(new URL('../../fixtures/tls/cert.pem', import.meta.url)))
const KEY_ID = 'KEY1234567'
const TEAM_ID = 'TEAM123456'
const TOPIC = 'com.example.herald'

interface Answer { readonly status: number, readonly headers: IncomingHttpHeaders, readonly json: Record<string, unknown> | null }

interface Rig {
  readonly fake: FakeApns
  readonly client: ClientHttp2Session
  readonly privateKey: KeyObject
  /** A valid provider token unless claims/header say otherwise. */
  bearer (options?: { kid?: string, iss?: string, iat?: number, key?: KeyObject }): string
  post (path: string, headers?: OutgoingHttpHeaders, body?: string): Promise<Answer>
}

async function rig (t: Test, fakeOptions: Omit<FakeApnsOptions, 'publicKey' | 'keyId' | 'teamId' | 'topics'> = {}): Promise<Rig> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const fake = await startFakeApns({ publicKey, keyId: KEY_ID, teamId: TEAM_ID, topics: [TOPIC], ...fakeOptions })
  const client = connect(`https://localhost:${fake.port}`, { ca: CA })
  client.on('error', () => {})
  t.teardown(async () => {
    await new Promise<void>((resolve) => client.close(() => resolve()))
    await fake.close()
  })
  const bearer: Rig['bearer'] = (options = {}) => {
    const claims = { iss: options.iss ?? TEAM_ID, iat: options.iat ?? Math.floor(Date.now() / 1000) }
    return `bearer ${jwt.sign(claims, (options.key ?? privateKey).export({ type: 'pkcs8', format: 'pem' }), { algorithm: 'ES256', keyid: options.kid ?? KEY_ID })}`
  }
  const post: Rig['post'] = async (path, headers = {}, body = '{"aps":{"alert":"hi"}}') => await new Promise((resolve, reject) => {
    const all: OutgoingHttpHeaders = { ':method': 'POST', ':path': path, authorization: bearer(), 'apns-topic': TOPIC, 'apns-push-type': 'alert', ...headers }
    // undefined: leave the header out
    for (const [name, value] of Object.entries(all)) if (value === undefined) delete all[name]
    const request = client.request(all)
    let status = 0
    let responseHeaders: IncomingHttpHeaders = {}
    let text = ''
    request.setEncoding('utf8')
    request.on('response', (h) => { status = Number(h[':status']); responseHeaders = h })
    request.on('data', (chunk: string) => { text += chunk })
    request.on('end', () => resolve({ status, headers: responseHeaders, json: text === '' ? null : JSON.parse(text) as Record<string, unknown> }))
    request.on('error', reject)
    // a GET has no body: Node ends its stream at once
    if (!request.writableEnded) request.end(body)
  })
  return { fake, client, privateKey, bearer, post }
}

const device = (): string => `/3/device/${randomBytes(32).toString('hex')}`

t.test('a valid request: 200 with an apns-id and no body, and it is recorded', async (t) => {
  const { fake, post } = await rig(t)
  const path = device()
  const answer = await post(path, { 'apns-priority': '10', 'apns-expiration': '0', 'apns-collapse-id': 'c' })
  t.equal(answer.status, 200)
  t.match(answer.headers['apns-id'], /^[0-9a-f-]{36}$/)
  t.equal(answer.json, null)
  const [request] = await fake.waitForRequests(1)
  t.match(request, { method: 'POST', path, token: path.slice('/3/device/'.length), status: 200, reason: null, session: 1, body: '{"aps":{"alert":"hi"}}' })
  t.strictSame(request?.json, { aps: { alert: 'hi' } })
  t.equal(request?.headers['apns-topic'], TOPIC)
})

t.test('an apns-id sent by the provider is echoed', async (t) => {
  const { post } = await rig(t)
  const id = '123e4567-e89b-12d3-a456-426614174000'
  t.equal((await post(device(), { 'apns-id': id })).headers['apns-id'], id)
  t.match(await post(device(), { 'apns-id': 'not-a-uuid' }), { status: 400, json: { reason: 'BadMessageId' } })
})

t.test('provider token checks', async (t) => {
  const { post, bearer } = await rig(t)
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey
  const noAuth = await post(device(), { authorization: undefined })
  t.match(noAuth, { status: 403, json: { reason: 'MissingProviderToken' } })
  t.match(await post(device(), { authorization: 'bearer nonsense' }), { status: 403, json: { reason: 'InvalidProviderToken' } })
  t.match(await post(device(), { authorization: bearer({ key: other }) }), { status: 403, json: { reason: 'InvalidProviderToken' } }, 'another key')
  t.match(await post(device(), { authorization: bearer({ kid: 'OTHERKEY00' }) }), { status: 403, json: { reason: 'InvalidProviderToken' } }, 'wrong kid')
  t.match(await post(device(), { authorization: bearer({ iss: 'OTHERTEAM0' }) }), { status: 403, json: { reason: 'InvalidProviderToken' } }, 'wrong iss')
  const hs256 = `bearer ${jwt.sign({ iss: TEAM_ID, iat: Math.floor(Date.now() / 1000) }, 'secret', { algorithm: 'HS256', keyid: KEY_ID })}`
  t.match(await post(device(), { authorization: hs256 }), { status: 403, json: { reason: 'InvalidProviderToken' } }, 'not ES256')
  t.match(await post(device(), { authorization: bearer({ iat: Math.floor(Date.now() / 1000) - 3700 }) }), { status: 403, json: { reason: 'ExpiredProviderToken' } })
  t.equal((await post(device())).status, 200)
})

t.test('cacheProviderTokens: a verified token is remembered until it expires, a bad one is refused every time', async (t) => {
  let clock = Date.now()
  const { post, bearer } = await rig(t, { cacheProviderTokens: true, now: () => clock })
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey
  const forged = bearer({ key: other })
  t.match(await post(device(), { authorization: forged }), { status: 403, json: { reason: 'InvalidProviderToken' } })
  t.match(await post(device(), { authorization: forged }), { status: 403, json: { reason: 'InvalidProviderToken' } }, 'still refused: never cached')
  t.match(await post(device(), { authorization: bearer({ iss: 'OTHERTEAM0' }) }), { status: 403, json: { reason: 'InvalidProviderToken' } })
  const good = bearer({ iat: Math.floor(clock / 1000) })
  t.equal((await post(device(), { authorization: good })).status, 200)
  t.equal((await post(device(), { authorization: good })).status, 200, 'again, from the cache')
  // a signature change of one character is another string: verified in full, and refused
  const tampered = `${good.slice(0, -2)}${good.endsWith('A') ? 'B' : 'A'}${good.slice(-1)}`
  t.match(await post(device(), { authorization: tampered }), { status: 403, json: { reason: 'InvalidProviderToken' } })
  clock += 3601 * 1000
  t.match(await post(device(), { authorization: good }), { status: 403, json: { reason: 'ExpiredProviderToken' } }, 'a cached token still expires after an hour')
})

t.test('recordRequests: false keeps nothing; onRequest and answered still see every request', async (t) => {
  const seen: FakeApnsRequest[] = []
  const { fake, post } = await rig(t, { recordRequests: false, onRequest: (r) => seen.push(r) })
  const path = device()
  await post(path, {}, '{"aps":{},"seq":"7"}')
  await post(device(), { authorization: undefined })
  await fake.waitForRequests(2)
  t.equal(fake.requests.length, 0)
  t.equal(fake.answered, 2)
  t.match(seen, [{ token: path.slice('/3/device/'.length), status: 200, json: { seq: '7' } }, { status: 403, reason: 'MissingProviderToken' }])
})

t.test('request checks', async (t) => {
  const { post } = await rig(t)
  t.match(await post('/3/devices/abc'), { status: 404, json: { reason: 'BadPath' } })
  t.match(await post('/3/device/'), { status: 400, json: { reason: 'MissingDeviceToken' } })
  t.match(await post('/3/device/xyz'), { status: 400, json: { reason: 'BadDeviceToken' } })
  t.match(await post('/3/device/abcd'), { status: 400, json: { reason: 'BadDeviceToken' } }, 'too short')
  t.match(await post(device(), { ':method': 'GET' }, ''), { status: 405, json: { reason: 'MethodNotAllowed' } })
  t.match(await post(device(), { 'apns-topic': undefined }), { status: 400, json: { reason: 'MissingTopic' } })
  t.match(await post(device(), { 'apns-topic': 'com.someone.else' }), { status: 400, json: { reason: 'TopicDisallowed' } })
  t.equal((await post(device(), { 'apns-topic': `${TOPIC}.voip`, 'apns-push-type': 'voip' })).status, 200, 'push-type suffixes of an allowed topic')
  t.match(await post(device(), { 'apns-push-type': undefined }), { status: 400, json: { reason: 'InvalidPushType' } })
  t.match(await post(device(), { 'apns-push-type': 'loud' }), { status: 400, json: { reason: 'InvalidPushType' } })
  t.match(await post(device(), { 'apns-priority': '7' }), { status: 400, json: { reason: 'BadPriority' } })
  t.match(await post(device(), { 'apns-expiration': 'soon' }), { status: 400, json: { reason: 'BadExpirationDate' } })
  t.match(await post(device(), { 'apns-collapse-id': 'c'.repeat(65) }), { status: 400, json: { reason: 'BadCollapseId' } })
  t.match(await post(device(), {}, ''), { status: 400, json: { reason: 'PayloadEmpty' } })
  t.match(await post(device(), {}, 'not json'), { status: 400, json: { reason: 'BadPayload' } })
  const atLimit = JSON.stringify({ aps: {}, pad: 'p'.repeat(4096 - 19) })
  t.equal(Buffer.byteLength(atLimit), 4096)
  t.equal((await post(device(), {}, atLimit)).status, 200, '4096 bytes is fine')
  t.match(await post(device(), {}, JSON.stringify({ aps: {}, pad: 'p'.repeat(4096 - 18) })), { status: 413, json: { reason: 'PayloadTooLarge' } })
})

t.test('scripted replies: per token, always or a number of times, checks first', async (t) => {
  const { fake, post, bearer } = await rig(t)
  const gone = device()
  const busy = device()
  const goneToken = gone.slice('/3/device/'.length)
  fake.respond(goneToken, { status: 410, reason: 'Unregistered' })
  fake.respond(busy.slice('/3/device/'.length), { status: 429, reason: 'TooManyRequests', retryAfter: 7, times: 2 })

  const first = await post(gone)
  t.equal(first.status, 410)
  t.equal(first.json?.reason, 'Unregistered')
  t.type(first.json?.timestamp, 'number', '410 carries a timestamp')
  t.match(first.headers['apns-id'], /^[0-9a-f-]{36}$/)
  t.equal((await post(gone)).status, 410, 'without times: every time')

  const limited = await post(busy)
  t.equal(limited.status, 429)
  t.equal(limited.headers['retry-after'], '7')
  t.strictSame(limited.json, { reason: 'TooManyRequests' })
  t.equal((await post(busy)).status, 429)
  t.equal((await post(busy)).status, 200, 'after `times` answers the token works again')

  t.match(await post(gone, { authorization: bearer({ iss: 'NOPE000000' }) }), { status: 403 }, 'a bad request is refused before any script')
  t.strictSame(fake.requests.map((r) => r.status), [410, 410, 429, 429, 200, 403])
  t.strictSame(fake.requests.filter((r) => r.token === goneToken).map((r) => r.reason), ['Unregistered', 'Unregistered', 'InvalidProviderToken'])
})

t.test('scripted resets: stream or connection', async (t) => {
  const { fake, post } = await rig(t)
  const path = device()
  fake.respond(path.slice('/3/device/'.length), { reset: 'stream', times: 1 })
  await t.rejects(post(path), { code: 'ERR_HTTP2_STREAM_ERROR' })
  t.equal((await post(path)).status, 200)
  t.strictSame(fake.requests.map((r) => r.status), [0, 200])
})

t.test('waitForRequests waits for the n-th request', async (t) => {
  const { fake, post } = await rig(t)
  let resolved = false
  const waiting = fake.waitForRequests(2).then((requests) => { resolved = true; return requests })
  await post(device())
  t.notOk(resolved, 'not after the first')
  await post(device())
  t.equal((await waiting).length, 2)
  t.equal((await fake.waitForRequests(1)).length, 2, 'already there: resolves at once')
})

t.test('one stream until a request authenticates, then the full limit', async (t) => {
  const { fake, post } = await rig(t)
  // a cold connection: the second concurrent stream exceeds the announced limit of 1
  const cold = await Promise.allSettled([post(device()), post(device())])
  t.strictSame(cold.map((r) => r.status).sort(), ['fulfilled', 'rejected'])
  const refused = cold.find((r) => r.status === 'rejected')
  t.match(refused?.status === 'rejected' ? refused.reason : null, { message: /NGHTTP2_REFUSED_STREAM/ })
  // authenticated now: many at once are fine
  const warm = await Promise.all(Array.from({ length: 20 }, async () => await post(device())))
  t.ok(warm.every((a) => a.status === 200))
  t.equal(fake.requests.length, 21)
})

t.test('without oneStreamUntilAuthenticated a new connection takes many streams', async (t) => {
  const { post } = await rig(t, { oneStreamUntilAuthenticated: false })
  const answers = await Promise.all(Array.from({ length: 20 }, async () => await post(device())))
  t.ok(answers.every((a) => a.status === 200))
})

t.test('close() ends open connections', async (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const fake = await startFakeApns({ publicKey, keyId: KEY_ID, teamId: TEAM_ID, topics: [TOPIC] })
  const client = connect(`https://localhost:${fake.port}`, { ca: CA })
  client.on('error', () => {})
  const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  const request = client.request({ ':method': 'POST', ':path': device() })
  request.on('error', () => {})
  request.end('{}')
  await fake.waitForRequests(1)
  t.equal(fake.requests[0]?.reason, 'MissingProviderToken')
  await fake.close()
  await clientClosed
  t.equal(fake.sessions, 1)
})

t.test('close() also ends a connection that is still in its TLS handshake', async (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const fake = await startFakeApns({ publicKey, keyId: KEY_ID, teamId: TEAM_ID, topics: [TOPIC] })
  const client = connect(`https://localhost:${fake.port}`, { ca: CA })
  client.on('error', () => {})
  const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  // the client side of the handshake completes before the server side
  await new Promise<void>((resolve) => client.once('connect', () => resolve()))
  await fake.close()
  await clientClosed
  t.pass('closed')
})
