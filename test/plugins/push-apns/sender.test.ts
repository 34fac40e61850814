/**
 * The real node-apn, driven through createApnsSender, against the HTTP/2 + TLS fake.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import jwt from 'jsonwebtoken'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { classifyApnsResponse, createApnsSender, type ApnsSenderConfig } from '../../../plugins/push-apns/sender.js'
import type { Delivery, DeliveryResult, DeviceToken, PushSender, RelayContent } from '../../../plugins/push-core/types.js'
import { startFakeApns, type FakeApns, type FakeApnsOptions } from '../../fakes/apns-server.js'

const CA_FILE = fileURLToPath(new URL('../../fixtures/tls/cert.pem', import.meta.url))
const KEY_ID = 'ABC123DEFG'
const TEAM_ID = 'DEF123GHIJ'
const TOPIC = 'com.example.herald'
const EXPIRES_AT = 2_000_000_000_000

interface Rig {
  readonly fake: FakeApns
  readonly sender: PushSender
  readonly config: ApnsSenderConfig
  readonly publicKey: KeyObject
}

function writeKey (t: Test): { keyFile: string, publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const dir = mkdtempSync(join(tmpdir(), 'herald-apns-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const keyFile = join(dir, `AuthKey_${KEY_ID}.p8`)
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }))
  return { keyFile, publicKey }
}

async function rig (t: Test, fakeOptions: Partial<FakeApnsOptions> = {}, configOverrides: Partial<ApnsSenderConfig> = {}): Promise<Rig> {
  const { keyFile, publicKey } = writeKey(t)
  const fake = await startFakeApns({ publicKey, keyId: KEY_ID, teamId: TEAM_ID, topics: [TOPIC, 'com.example.other'], ...fakeOptions })
  const config: ApnsSenderConfig = {
    keyFile,
    keyId: KEY_ID,
    teamId: TEAM_ID,
    topic: TOPIC,
    production: true,
    // localhost, not 127.0.0.1: TLS SNI must not be an IP address (RFC 6066, Node DEP0123)
    host: 'localhost',
    port: fake.port,
    caFile: CA_FILE,
    ...configOverrides,
  }
  const sender = createApnsSender(config, pino({ level: 'silent' }))
  // sender first: its sessions close cleanly before the server goes away
  t.teardown(async () => {
    await sender.close()
    await fake.close()
  })
  return { fake, sender, config, publicKey }
}

const newToken = (): string => randomBytes(32).toString('hex')
let jobs = 0

function delivery (token: string, content: Partial<Extract<RelayContent, { kind: 'push' }>> = {}, tokenFields: Partial<DeviceToken> = {}): Delivery {
  return {
    jobId: `job-${++jobs}`,
    token: { provider: 'apns', token, environment: 'production', apnsTopic: null, ...tokenFields },
    content: { kind: 'push', messageId: 'msg-1', topic: 'users/alice/inbox', notification: { title: 'Hi', body: 'there' }, data: { k: 'v' }, ...content },
    expiresAt: EXPIRES_AT,
  }
}

async function sendOne (sender: PushSender, d: Delivery): Promise<DeliveryResult> {
  const [result] = await sender.send([d])
  if (result === undefined) throw new Error('no result')
  return result
}

t.test('sender shape', async (t) => {
  const { sender } = await rig(t)
  t.equal(sender.provider, 'apns')
  t.ok(sender.maxBatch >= 1)
  t.strictSame(await sender.send([]), [])
})

t.test('a push reaches APNs as APNs expects it', async (t) => {
  const { fake, sender, publicKey } = await rig(t)
  const token = newToken()
  const result = await sendOne(sender, delivery(token, {
    apns: { collapseId: 'thread-9', expiration: 1_950_000_000, sound: 'default', badge: 2 },
  }))
  t.strictSame(result, { jobId: `job-${jobs}`, outcome: 'sent' })

  const [request] = await fake.waitForRequests(1)
  if (request === undefined) throw new Error('no request')
  t.equal(request.method, 'POST')
  t.equal(request.path, `/3/device/${token}`)
  t.equal(request.token, token)
  t.equal(request.headers['apns-topic'], TOPIC)
  t.equal(request.headers['apns-push-type'], 'alert')
  t.equal(request.headers['apns-priority'], '10')
  t.equal(request.headers['apns-expiration'], '1950000000')
  t.equal(request.headers['apns-collapse-id'], 'thread-9')
  t.notOk('apns-id' in request.headers, 'APNs assigns the id')
  t.strictSame(request.json, {
    k: 'v',
    aps: { alert: { title: 'Hi', body: 'there' }, badge: 2, sound: 'default' },
    messageId: 'msg-1',
    topic: 'users/alice/inbox',
  })

  // the bearer token is an ES256 JWT signed with the .p8, issued by the team, naming the key
  const bearer = /^bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? ''
  const decoded = jwt.verify(bearer, publicKey, { algorithms: ['ES256'], complete: true, issuer: TEAM_ID })
  t.equal(decoded.header.alg, 'ES256')
  t.equal(decoded.header.kid, KEY_ID)
  t.type((decoded.payload as jwt.JwtPayload).iat, 'number')
  t.equal(request.status, 200)
})

t.test('a data-only push goes out as background, priority 5, expiry from expiresAt', async (t) => {
  const { fake, sender } = await rig(t)
  const result = await sendOne(sender, delivery(newToken(), { notification: null }))
  t.equal(result.outcome, 'sent')
  const [request] = await fake.waitForRequests(1)
  t.equal(request?.headers['apns-push-type'], 'background')
  t.equal(request?.headers['apns-priority'], '5')
  t.equal(request?.headers['apns-expiration'], String(EXPIRES_AT / 1000))
  t.notOk(request !== undefined && 'apns-collapse-id' in request.headers)
  t.strictSame(request?.json, { k: 'v', aps: { 'content-available': 1 }, messageId: 'msg-1', topic: 'users/alice/inbox' })
})

t.test('raw content, voip topic, installation topic and wake-up reach APNs', async (t) => {
  const { fake, sender } = await rig(t)
  const raw: Delivery = { jobId: 'raw', token: { provider: 'apns', token: newToken(), environment: 'production', apnsTopic: null }, content: { kind: 'raw', messageId: 'r-1', topic: 'app/news', payload: 'hello' }, expiresAt: EXPIRES_AT }
  const voip = delivery(newToken(), { apns: { pushType: 'voip' } })
  const other = delivery(newToken(), {}, { apnsTopic: 'com.example.other' })
  const big = delivery(newToken(), { data: { blob: 'x'.repeat(5000) } })
  const results = await sender.send([raw, voip, other, big])
  t.strictSame(results.map((r) => r.outcome), ['sent', 'sent', 'sent', 'sent'])
  const requests = await fake.waitForRequests(4)
  const byToken = new Map(requests.map((r) => [r.token, r]))
  t.strictSame(byToken.get(raw.token.token)?.json, { aps: { 'content-available': 1 }, topic: 'app/news', messageId: 'r-1', payload: 'hello' })
  t.equal(byToken.get(voip.token.token)?.headers['apns-topic'], `${TOPIC}.voip`)
  t.equal(byToken.get(voip.token.token)?.headers['apns-push-type'], 'voip')
  t.equal(byToken.get(other.token.token)?.headers['apns-topic'], 'com.example.other')
  const wake = byToken.get(big.token.token)
  t.strictSame(wake?.json, { aps: { 'content-available': 1 }, messageId: 'msg-1', topic: 'users/alice/inbox', truncated: true })
  t.equal(wake?.headers['apns-push-type'], 'background')
  t.ok(Buffer.byteLength(wake?.body ?? '') <= 4096)
})

t.test('APNs answers map to sent, prune, retry and drop', async (t) => {
  const { fake, sender } = await rig(t)
  const cases: Array<{ status: number, reason: string, outcome: DeliveryResult['outcome'], retryAfter?: number }> = [
    { status: 400, reason: 'BadDeviceToken', outcome: 'prune' },
    { status: 400, reason: 'DeviceTokenNotForTopic', outcome: 'prune' },
    { status: 410, reason: 'Unregistered', outcome: 'prune' },
    { status: 410, reason: 'ExpiredToken', outcome: 'prune' },
    { status: 429, reason: 'TooManyRequests', outcome: 'retry', retryAfter: 1 },
    { status: 503, reason: 'ServiceUnavailable', outcome: 'retry' },
    { status: 403, reason: 'ExpiredProviderToken', outcome: 'retry' },
    { status: 413, reason: 'PayloadTooLarge', outcome: 'drop' },
    { status: 400, reason: 'PayloadTooLarge', outcome: 'drop' },
    { status: 400, reason: 'BadTopic', outcome: 'drop' },
    { status: 400, reason: 'BadExpirationDate', outcome: 'drop' },
    { status: 403, reason: 'InvalidProviderToken', outcome: 'drop' },
    // last and on its own: node-apn closes the connection after a 500, and retryable answers
    // still in flight on it then lose their status (see node-apn-sender.ts)
    { status: 500, reason: 'InternalServerError', outcome: 'retry' },
  ]
  const ok = delivery(newToken())
  const deliveries = cases.map((c) => {
    const d = delivery(newToken())
    fake.respond(d.token.token, { status: c.status, reason: c.reason, ...(c.retryAfter !== undefined && { retryAfter: c.retryAfter }) })
    return d
  })
  const results = [
    ...await sender.send([ok, ...deliveries.slice(0, -1)]),
    ...await sender.send(deliveries.slice(-1)),
  ]
  t.strictSame(results[0], { jobId: ok.jobId, outcome: 'sent' })
  cases.forEach((c, i) => {
    const d = deliveries[i] as Delivery
    const result = results[i + 1]
    t.equal(result?.jobId, d.jobId, `${c.status} ${c.reason}: result for its job`)
    t.equal(result?.outcome, c.outcome, `${c.status} ${c.reason} → ${c.outcome}`)
    if (result !== undefined && result.outcome !== 'sent') {
      t.equal(result.reason, `APNs ${c.status} ${c.reason}`, 'reason names status and APNs reason')
      t.notMatch(result.reason.toLowerCase(), d.token.token, 'reason never holds the device token')
    }
    if (result?.outcome === 'retry') {
      // node-apn 8.1.0 reads headers['Retry-After'] (HTTP/2 names are lower-case) and deletes it before
      // reporting, so Retry-After never reaches Herald; the outbox backs off on its own
      t.notOk('retryAfterMs' in result, 'node-apn exposes no Retry-After')
    }
  })
  const retryAfterRequest = fake.requests.find((r) => r.token === deliveries[4]?.token.token)
  t.equal(retryAfterRequest?.status, 429, 'the fake did answer 429 with Retry-After')
  // node-apn's internal retry is off: one request per delivery, backoff is the outbox's job
  t.equal(fake.requests.length, cases.length + 1)
})

t.test('a scripted answer can be one-off: the next attempt succeeds', async (t) => {
  const { fake, sender } = await rig(t)
  const d = delivery(newToken())
  fake.respond(d.token.token, { status: 429, reason: 'TooManyRequests', times: 1 })
  t.equal((await sendOne(sender, d)).outcome, 'retry')
  t.equal((await sendOne(sender, d)).outcome, 'sent')
  t.strictSame(fake.requests.map((r) => r.status), [429, 200])
})

t.test('a 500 makes node-apn drop the connection; the next send reconnects', async (t) => {
  const { fake, sender } = await rig(t)
  const d = delivery(newToken())
  fake.respond(d.token.token, { status: 500, reason: 'InternalServerError', times: 1 })
  t.equal((await sendOne(sender, d)).outcome, 'retry')
  t.equal((await sendOne(sender, d)).outcome, 'sent')
  const [first, second] = await fake.waitForRequests(2)
  t.not(first?.session, second?.session, 'new HTTP/2 connection')
})

t.test('transport failures are retried, and the sender recovers', async (t) => {
  const { fake, sender } = await rig(t)
  const streamReset = delivery(newToken())
  const connectionDrop = delivery(newToken())
  fake.respond(streamReset.token.token, { reset: 'stream', times: 1 })
  const reset = await sendOne(sender, streamReset)
  t.equal(reset.outcome, 'retry')
  t.match(reset, { reason: /^APNs transport error: / })
  t.notMatch(reset.outcome === 'retry' ? reset.reason : '', streamReset.token.token)

  fake.respond(connectionDrop.token.token, { reset: 'session', times: 1 })
  const dropped = await sendOne(sender, connectionDrop)
  t.equal(dropped.outcome, 'retry')
  t.match(dropped, { reason: /^APNs transport error: / })

  t.strictSame((await sender.send([streamReset, connectionDrop])).map((r) => r.outcome), ['sent', 'sent'])
  t.ok(fake.sessions >= 2, 'reconnected after the connection was dropped')
})

t.test('nothing listening: retry', async (t) => {
  const { keyFile } = writeKey(t)
  // a port that was free a moment ago and has nobody listening
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as { port: number }).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const sender = createApnsSender({ keyFile, keyId: KEY_ID, teamId: TEAM_ID, topic: TOPIC, production: true, host: 'localhost', port, caFile: CA_FILE })
  t.teardown(() => sender.close())
  const result = await sendOne(sender, delivery(newToken()))
  t.equal(result.outcome, 'retry')
  t.match(result, { reason: /^APNs transport error: / })
})

t.test('a key APNs does not know: 403 InvalidProviderToken, dropped', async (t) => {
  const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey
  const { fake, sender } = await rig(t, { publicKey: other })
  const result = await sendOne(sender, delivery(newToken()))
  t.match(result, { outcome: 'drop', reason: 'APNs 403 InvalidProviderToken' })
  t.equal(fake.requests[0]?.reason, 'InvalidProviderToken')
})

t.test('a wrong key id or team id: 403 InvalidProviderToken', async (t) => {
  const { sender: wrongKid, config } = await rig(t, {}, { keyId: 'ZZZZZZZZZZ' })
  t.match(await sendOne(wrongKid, delivery(newToken())), { outcome: 'drop', reason: 'APNs 403 InvalidProviderToken' })
  // same key file, right key id, another team
  const wrongTeam = createApnsSender({ ...config, keyId: KEY_ID, teamId: 'NOTMYTEAM0' })
  t.teardown(() => wrongTeam.close())
  t.match(await sendOne(wrongTeam, delivery(newToken())), { outcome: 'drop', reason: 'APNs 403 InvalidProviderToken' })
})

t.test('a topic the key may not push to is dropped, not pruned', async (t) => {
  const { sender } = await rig(t)
  t.match(await sendOne(sender, delivery(newToken(), {}, { apnsTopic: 'com.someone.else' })), { outcome: 'drop', reason: 'APNs 400 TopicDisallowed' })
})

t.test('development and production tokens each get their own connection', async (t) => {
  const { fake, sender } = await rig(t)
  const prod = delivery(newToken(), {}, { environment: 'production' })
  const dev = delivery(newToken(), {}, { environment: 'development' })
  t.strictSame((await sender.send([prod, dev])).map((r) => r.outcome), ['sent', 'sent'])
  t.strictSame((await sender.send([dev, prod])).map((r) => r.outcome), ['sent', 'sent'])
  const requests = await fake.waitForRequests(4)
  const sessionsOf = (token: string): Set<number> => new Set(requests.filter((r) => r.token === token).map((r) => r.session))
  t.equal(sessionsOf(prod.token.token).size, 1, 'production reuses its connection')
  t.equal(sessionsOf(dev.token.token).size, 1, 'development reuses its connection')
  t.not([...sessionsOf(prod.token.token)][0], [...sessionsOf(dev.token.token)][0], 'one provider per environment')
  t.equal(fake.sessions, 2)
})

t.test('200 deliveries in flight at once all succeed over one connection', async (t) => {
  const { fake, sender } = await rig(t)
  const deliveries = Array.from({ length: 200 }, () => delivery(newToken()))
  // as the relay worker calls it: many single-delivery sends side by side
  const results = (await Promise.all(deliveries.map(async (d) => await sender.send([d])))).flat()
  t.equal(results.length, 200)
  t.ok(results.every((r) => r.outcome === 'sent'), 'all sent')
  t.strictSame(results.map((r) => r.jobId), deliveries.map((d) => d.jobId))
  const requests = await fake.waitForRequests(200)
  t.equal(new Set(requests.map((r) => r.token)).size, 200)
  t.equal(fake.sessions, 1, 'one HTTP/2 connection')
})

t.test('more deliveries than the server allows streams: queued, not failed', async (t) => {
  const { fake, sender } = await rig(t, { maxConcurrentStreams: 10 })
  const deliveries = Array.from({ length: 60 }, () => delivery(newToken()))
  const results = await sender.send(deliveries)
  t.ok(results.every((r) => r.outcome === 'sent'), 'all sent')
  t.equal(fake.requests.length, 60)
})

t.test('close() shuts the connections; later sends are retried, not thrown', async (t) => {
  const { sender } = await rig(t)
  t.equal((await sendOne(sender, delivery(newToken()))).outcome, 'sent')
  await sender.close()
  t.match(await sendOne(sender, delivery(newToken())), { outcome: 'retry', reason: 'APNs transport error: sender closed' })
  await sender.close()
})

t.test('close() completes after APNs hung up', async (t) => {
  const { fake, sender } = await rig(t)
  const prod = delivery(newToken())
  const dev = delivery(newToken(), {}, { environment: 'development' })
  t.strictSame((await sender.send([prod, dev])).map((r) => r.outcome), ['sent', 'sent'])
  await fake.close()
  await sender.close()
  t.pass('closed')
})

t.test('config errors are reported at creation, naming the key', async (t) => {
  const { keyFile } = writeKey(t)
  const base: ApnsSenderConfig = { keyFile, keyId: KEY_ID, teamId: TEAM_ID, topic: TOPIC, production: true, host: null, port: null, caFile: null }
  t.throws(() => createApnsSender({ ...base, keyFile: join(tmpdir(), 'no-such-key.p8') }), { message: 'push.apns.keyFile: file not found' })
  t.throws(() => createApnsSender({ ...base, keyFile: CA_FILE }), { message: /^push\.apns\.keyFile: not a PEM-encoded P-256 private key/ })
  t.throws(() => createApnsSender({ ...base, caFile: join(tmpdir(), 'no-such-ca.pem') }), { message: 'push.apns.caFile: file not found' })
  // no connection is made before the first delivery
  const lazy = createApnsSender(base)
  await lazy.close()
})

t.test('classifyApnsResponse', async (t) => {
  const c = (status: number | null, reason: string): string => classifyApnsResponse({ ok: false, status, reason }).outcome
  t.equal(classifyApnsResponse({ ok: true, apnsId: null }).outcome, 'sent')
  t.equal(c(null, 'ECONNRESET'), 'retry')
  t.equal(c(410, 'Unregistered'), 'prune')
  t.equal(c(410, 'whatever'), 'prune', 'any 410 means the token is gone')
  t.equal(c(400, 'BadDeviceToken'), 'prune')
  t.equal(c(400, 'DeviceTokenNotForTopic'), 'prune')
  t.equal(c(429, 'TooManyProviderTokenUpdates'), 'retry')
  t.equal(c(400, 'IdleTimeout'), 'retry')
  t.equal(c(502, 'Bad Gateway'), 'retry', 'any 5xx')
  t.equal(c(503, 'Shutdown'), 'retry')
  t.equal(c(408, 'timeout'), 'retry')
  t.equal(c(403, 'ExpiredProviderToken'), 'retry')
  t.equal(c(403, 'InvalidProviderToken'), 'drop')
  t.equal(c(403, 'BadEnvironmentKeyIdInToken'), 'drop')
  t.equal(c(400, 'BadCollapseId'), 'drop')
  t.equal(c(400, 'MissingTopic'), 'drop')
  t.equal(c(405, 'MethodNotAllowed'), 'drop')
})
