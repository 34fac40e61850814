/**
 * The real firebase-admin, through createFcmSender, against the fake FCM and
 * OAuth endpoints (test/fakes/fcm-server.ts) over TLS.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Delivery, DeliveryResult, PushSender, RelayContent } from '../../../plugins/push-core/types.js'
import { RATE_LIMIT_RETRY_AFTER_MS } from '../../../plugins/push-fcm/firebase-sender.js'
import { formatFcm } from '../../../plugins/push-fcm/format.js'
import { createFcmSender, type FcmConfig, type FcmLogger } from '../../../plugins/push-fcm/sender.js'
import { GOOGLE_TOKEN_URL, startFakeFcm, type FakeFcm, type FakeFcmOptions, type FcmFault, type RecordedMessage } from '../../fakes/fcm-server.js'

const PROJECT = 'herald-test'
const CLIENT_EMAIL = `firebase-adminsdk@${PROJECT}.iam.gserviceaccount.com`
const { publicKey, privateKey } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
})

interface Env {
  readonly fake: FakeFcm
  readonly config: FcmConfig
  readonly dir: string
  sender (config?: Partial<FcmConfig>, logger?: FcmLogger): PushSender
}

/** A fake FCM, a service account file for it, and senders closed at teardown. */
async function setup (t: { teardown (fn: () => unknown): void }, fakeOptions: Pick<FakeFcmOptions, 'recordMessages' | 'onMessage'> = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'herald-fcm-'))
  const serviceAccountFile = join(dir, 'service-account.json')
  await writeFile(serviceAccountFile, JSON.stringify({
    type: 'service_account',
    project_id: PROJECT,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: privateKey,
    client_email: CLIENT_EMAIL,
    client_id: '123456789012345678901',
    token_uri: GOOGLE_TOKEN_URL,
  }))
  const fake = await startFakeFcm({ projectId: PROJECT, clientEmail: CLIENT_EMAIL, publicKey, ...fakeOptions })
  const config: FcmConfig = { serviceAccountFile, projectId: null, endpoint: fake.url, caFile: fake.caFile }
  const senders: PushSender[] = []
  t.teardown(async () => {
    await Promise.all(senders.map(async (s) => await s.close()))
    await fake.close()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    fake,
    config,
    dir,
    sender (over = {}, logger) {
      const s = createFcmSender({ ...config, ...over }, logger)
      senders.push(s)
      return s
    },
  }
}

/** Tokens shaped like real ones (long, opaque), so "never in a reason" means something. */
const deviceToken = (name: string): string => `${name}:APA91b${randomBytes(60).toString('base64url')}`

let jobSeq = 0
function delivery (token: string, content?: Partial<Extract<RelayContent, { kind: 'push' }>>): Delivery {
  const n = ++jobSeq
  return {
    jobId: `job-${n}`,
    token: { provider: 'fcm', token, environment: 'production', apnsTopic: null },
    content: {
      kind: 'push',
      messageId: `msg-${n}`,
      topic: 'users/alice/inbox',
      notification: { title: 'Hello', body: `message ${n}` },
      data: { n: String(n) },
      ...content,
    },
    expiresAt: Date.now() + 3_600_000,
  }
}

const outcomes = (results: DeliveryResult[]): string[] => results.map((r) => r.outcome)

/** What firebase-admin puts on the wire for one of our messages (v1 JSON names, ttl as a Duration). */
function wire (d: Delivery): Record<string, unknown> {
  const m = formatFcm(d)
  const { collapseKey, ttl, ...android } = m.android
  return {
    ...m,
    android: { ...android, ttl: `${ttl / 1000}s`, ...(collapseKey !== undefined ? { collapse_key: collapseKey } : {}) },
  }
}

t.test('a push reaches messages:send with a bearer token from the service account', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  t.equal(sender.provider, 'fcm')
  t.equal(sender.maxBatch, 500)
  const token = deviceToken('a')
  const d = delivery(token, { fcm: { collapseKey: 'inbox', ttl: 600 } })

  t.same(await sender.send([d]), [{ jobId: d.jobId, outcome: 'sent' }])

  t.equal(env.fake.tokenRequests.length, 1, 'one token request')
  const tokenRequest = env.fake.tokenRequests[0]!
  t.equal(tokenRequest.status, 200)
  t.equal(tokenRequest.grantType, 'urn:ietf:params:oauth:grant-type:jwt-bearer')
  t.equal(tokenRequest.header?.alg, 'RS256')
  t.equal(tokenRequest.claims?.iss, CLIENT_EMAIL, 'assertion signed by the service account')
  t.equal(tokenRequest.claims?.aud, GOOGLE_TOKEN_URL)
  t.match(String(tokenRequest.claims?.scope), /firebase\.messaging/)
  t.equal(tokenRequest.headers.host, 'oauth2.googleapis.com', 'the SDK asked for Google; the agent dialled the fake')

  t.equal(env.fake.messages.length, 1)
  const sent = env.fake.messages[0]!
  t.equal(sent.path, `/v1/projects/${PROJECT}/messages:send`)
  t.equal(sent.headers.host, 'fcm.googleapis.com')
  t.equal(sent.headers.authorization, `Bearer ${tokenRequest.accessToken}`)
  t.equal(sent.token, token)
  t.equal(sent.validateOnly, false)
  t.same(sent.message, wire(d), 'the formatted message, as the SDK serialises it')
  t.same(sent.message.android, { priority: 'high', ttl: '600s', collapse_key: 'inbox' })

  // The access token is cached by the SDK: later sends make no token request.
  t.same(outcomes(await sender.send([delivery(deviceToken('b')), delivery(deviceToken('c'))])), ['sent', 'sent'])
  t.equal(env.fake.tokenRequests.length, 1)
  t.equal(env.fake.messages.length, 3)
  t.ok(env.fake.messages.every((m) => m.headers.authorization === sent.headers.authorization))
})

t.test('data messages, raw relays and oversized payloads go through', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  const dataOnly = delivery(deviceToken('d'), { notification: null })
  const raw: Delivery = { ...delivery(deviceToken('r')), content: { kind: 'raw', messageId: 'raw-1', topic: 'groups/ops/x', payload: 'hi' } }
  const big = delivery(deviceToken('big'), { data: { blob: 'z'.repeat(5000) } })
  t.same(outcomes(await sender.send([dataOnly, raw, big])), ['sent', 'sent', 'sent'])
  const byToken = new Map(env.fake.messages.map((m) => [m.token, m.message]))
  t.notOk('notification' in byToken.get(dataOnly.token.token)!, 'no notification')
  t.same(byToken.get(raw.token.token)?.data, { topic: 'groups/ops/x', messageId: 'raw-1', payload: 'hi' })
  t.same(byToken.get(big.token.token)?.data, { messageId: big.content.messageId, topic: 'users/alice/inbox', truncated: 'true' })
})

t.test('each FCM error maps to retry, prune or drop', async (t) => {
  const env = await setup(t)
  const logs: unknown[] = []
  const sender = env.sender({}, { warn: (fields, message) => logs.push({ fields, message }) })
  const cases: Array<{ fault: FcmFault | null, outcome: DeliveryResult['outcome'], code: RegExp, retryAfter?: number, attempts: number, times?: 'once' }> = [
    { fault: 'UNREGISTERED', outcome: 'prune', code: /registration-token-not-registered/, attempts: 1 },
    { fault: 'INVALID_TOKEN', outcome: 'prune', code: /invalid-argument: The registration token is not a valid/, attempts: 1 },
    { fault: 'INVALID_ARGUMENT', outcome: 'drop', code: /invalid-argument/, attempts: 1 },
    { fault: 'SENDER_ID_MISMATCH', outcome: 'prune', code: /mismatched-credential: SenderId mismatch/, attempts: 1 },
    { fault: 'PERMISSION_DENIED', outcome: 'retry', code: /mismatched-credential.*permission/, attempts: 1 },
    { fault: 'THIRD_PARTY_AUTH_ERROR', outcome: 'retry', code: /third-party-auth-error/, attempts: 1 },
    // The SDK does not retry 429 itself and keeps no Retry-After: FCM's documented one-minute minimum stands in.
    { fault: 'QUOTA_EXCEEDED', outcome: 'retry', code: /message-rate-exceeded/, retryAfter: 30, attempts: 1 },
    { fault: 'INTERNAL', outcome: 'retry', code: /internal-error/, attempts: 1 },
    { fault: 'BAD_GATEWAY', outcome: 'retry', code: /unknown-error/, attempts: 1 },
    // The SDK retries 503 four times (honouring Retry-After up to 60 s) before giving up...
    { fault: 'UNAVAILABLE', outcome: 'retry', code: /server-unavailable/, retryAfter: 1, attempts: 5 },
    // ...so one 503 is absorbed inside sendEach.
    { fault: 'UNAVAILABLE', outcome: 'sent', code: /^$/, times: 'once', attempts: 2 },
    { fault: null, outcome: 'sent', code: /^$/, attempts: 1 },
  ]
  const deliveries = cases.map((c, i) => {
    const token = deviceToken(`case${i}`)
    if (c.fault !== null) env.fake.script(token, c.fault, c.times ?? 'always', c.retryAfter !== undefined ? { retryAfter: c.retryAfter } : {})
    return delivery(token)
  })

  const results = await sender.send(deliveries)

  t.equal(results.length, cases.length)
  cases.forEach((c, i) => {
    const r = results[i]!
    const d = deliveries[i]!
    const label = `${c.fault ?? 'ok'}${c.times === 'once' ? ' once' : ''}`
    t.equal(r.jobId, d.jobId, `${label}: job id`)
    t.equal(r.outcome, c.outcome, `${label}: ${c.outcome}`)
    if (r.outcome !== 'sent') {
      t.match(r.reason, c.code, `${label}: reason names the SDK code`)
      t.notOk(r.reason.includes(d.token.token), `${label}: reason has no device token`)
      t.notOk(r.reason.includes('ya29.'), `${label}: reason has no access token`)
    }
    t.equal(env.fake.messages.filter((m) => m.token === d.token.token).length, c.attempts, `${label}: ${c.attempts} request(s) reached FCM`)
  })
  const quota = results[cases.findIndex((c) => c.fault === 'QUOTA_EXCEEDED')]
  t.equal(quota?.outcome === 'retry' ? quota.retryAfterMs : undefined, RATE_LIMIT_RETRY_AFTER_MS)
  const internal = results[cases.findIndex((c) => c.fault === 'INTERNAL')]
  t.equal(internal?.outcome === 'retry' ? internal.retryAfterMs : 'none', undefined, 'no Retry-After to pass on')
  t.same(logs, [], 'per-message failures are results, not log lines')
})

t.test('a batch of 500 mixed deliveries: 500 results, in order', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  const plan: Array<[FcmFault | null, DeliveryResult['outcome']]> = [
    [null, 'sent'], ['UNREGISTERED', 'prune'], [null, 'sent'], ['INVALID_ARGUMENT', 'drop'],
    ['SENDER_ID_MISMATCH', 'prune'], ['QUOTA_EXCEEDED', 'retry'], ['INTERNAL', 'retry'], ['INVALID_TOKEN', 'prune'],
  ]
  const expected: string[] = []
  const deliveries = Array.from({ length: 500 }, (_, i) => {
    const [fault, outcome] = plan[i % plan.length]!
    const token = deviceToken(`bulk${i}`)
    if (fault !== null) env.fake.script(token, fault)
    expected.push(outcome)
    return delivery(token)
  })

  const pending = sender.send(deliveries)
  t.equal((await env.fake.waitForMessages(500)).length, 500, 'the fake saw every message')
  const results = await pending

  t.equal(results.length, 500)
  t.same(results.map((r) => r.jobId), deliveries.map((d) => d.jobId), 'job ids in order')
  t.same(outcomes(results), expected, 'each outcome at its place')
  t.equal(env.fake.messages.length, 500, 'one messages:send per message')
  t.equal(env.fake.tokenRequests.length, 1, 'one token fetch shared by the whole batch')
  const sentTokens = new Set(env.fake.messages.filter((m) => m.status === 200).map((m) => m.token))
  deliveries.forEach((d, i) => {
    if (expected[i] === 'sent' && !sentTokens.has(d.token.token)) t.fail(`delivery ${i} not sent`)
  })
})

t.test('more than 500 deliveries are split into sendEach batches', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  const deliveries = Array.from({ length: 503 }, (_, i) => delivery(deviceToken(`split${i}`)))
  const results = await sender.send(deliveries)
  t.equal(results.length, 503)
  t.ok(results.every((r) => r.outcome === 'sent'))
  t.same(results.map((r) => r.jobId), deliveries.map((d) => d.jobId))
})

t.test('token endpoint refuses: every delivery retries, nothing reaches FCM; the next batch recovers', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  env.fake.scriptTokenEndpoint({ status: 400, error: 'invalid_grant' })
  const batch = [delivery(deviceToken('t1')), delivery(deviceToken('t2')), delivery(deviceToken('t3'))]

  const results = await sender.send(batch)

  t.same(outcomes(results), ['retry', 'retry', 'retry'])
  t.same(results.map((r) => r.jobId), batch.map((d) => d.jobId))
  for (const r of results) {
    if (r.outcome === 'retry') {
      t.match(r.reason, /app\/invalid-credential/)
      t.notOk(r.reason.includes('BEGIN'), 'no key material')
    }
  }
  t.equal(env.fake.messages.length, 0)
  t.equal(env.fake.tokenRequests.length, 1, 'the batch shares one failed token fetch')

  env.fake.clearScripts()
  t.same(outcomes(await sender.send([delivery(deviceToken('t4'))])), ['sent'])
  t.equal(env.fake.tokenRequests.length, 2, 'a new token is fetched')
})

t.test('token endpoint 5xx: google-auth-library retries it 3 times, then every delivery retries', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  env.fake.scriptTokenEndpoint({ status: 503 })
  const pending = sender.send([delivery(deviceToken('u1')), delivery(deviceToken('u2'))])
  t.ok((await env.fake.waitForTokenRequests(1)).every((r) => r.status === 503))
  const results = await pending
  t.same(outcomes(results), ['retry', 'retry'])
  t.equal(env.fake.tokenRequests.length, 4, 'first try + 3 gaxios retries')
  t.equal(env.fake.messages.length, 0)
})

t.test('the endpoint certificate is verified: an untrusted one fails every delivery as retry', async (t) => {
  const env = await setup(t)
  const sender = env.sender({ caFile: null })
  const results = await sender.send([delivery(deviceToken('v1')), delivery(deviceToken('v2'))])
  t.same(outcomes(results), ['retry', 'retry'])
  t.equal(env.fake.tokenRequests.length, 0, 'no request got through TLS')
  for (const r of results) t.match(r.outcome === 'retry' ? r.reason : '', /app\/invalid-credential: access token fetch failed: .*self-signed certificate/)
  t.equal(env.fake.messages.length, 0)
})

t.test('two senders for one service account file each use their own endpoint settings', async (t) => {
  // firebase-admin's cert() caches credentials by argument and would reuse the first agent.
  const env = await setup(t)
  const untrusting = env.sender({ caFile: null })
  const [failed] = await untrusting.send([delivery(deviceToken('w1'))])
  t.equal(failed?.outcome, 'retry')
  t.match(failed?.outcome === 'retry' ? failed.reason : '', /access token fetch failed: .*self-signed certificate/)
  await untrusting.close()
  const trusting = env.sender()
  t.same(outcomes(await trusting.send([delivery(deviceToken('w2'))])), ['sent'])
  t.same(outcomes(await untrusting.send([delivery(deviceToken('w3'))])), ['retry'], 'the closed one stays closed')
})

t.test('the endpoint may be an IP address (checked against the IP SAN)', async (t) => {
  const env = await setup(t)
  const sender = env.sender({ endpoint: `https://127.0.0.1:${env.fake.port}` })
  t.same(outcomes(await sender.send([delivery(deviceToken('ip'))])), ['sent'])
})

t.test('projectId from config overrides the service account', async (t) => {
  const env = await setup(t)
  const sender = env.sender({ projectId: 'other-project' })
  const [r] = await sender.send([delivery(deviceToken('p'))])
  // The fake answers another project's path like FCM does: an IAM denial, which must not prune.
  t.equal(r?.outcome, 'retry')
  t.equal(env.fake.messages.length, 0, 'the request went to projects/other-project')
})

t.test('the fake with recordMessages: false keeps nothing; onMessage and answered see every message', async (t) => {
  const seen: RecordedMessage[] = []
  const env = await setup(t, { recordMessages: false, onMessage: (m) => seen.push(m) })
  const tokens = [deviceToken('a'), deviceToken('gone'), deviceToken('c')]
  env.fake.script(tokens[1] as string, 'UNREGISTERED')
  const results = await env.sender().send(tokens.map((token) => delivery(token)))
  t.same(outcomes(results), ['sent', 'prune', 'sent'])
  await env.fake.waitForMessages(3)
  t.equal(env.fake.messages.length, 0)
  t.equal(env.fake.answered, 3)
  t.same(seen.map((m) => [m.token, m.status]).sort(), tokens.map((token, i) => [token, i === 1 ? 404 : 200]).sort())
})

// a token of another provider: test/contracts/push-sender.test.ts, for every sender

t.test('close deletes the app; later sends retry; close is idempotent', async (t) => {
  const env = await setup(t)
  const sender = env.sender()
  t.same(outcomes(await sender.send([delivery(deviceToken('c1'))])), ['sent'])
  await Promise.all([sender.close(), sender.close()])
  await sender.close()
  const [r] = await sender.send([delivery(deviceToken('c2'))])
  t.equal(r?.outcome, 'retry')
  t.equal(env.fake.messages.length, 1)
})

t.test('without an endpoint (SDK default transport): creating and closing makes no request; caFile alone is ignored with a warning', async (t) => {
  const env = await setup(t)
  const warnings: string[] = []
  const sender = env.sender({ endpoint: null }, { warn: (_fields, message) => warnings.push(message) })
  await sender.close()
  t.same(warnings, ['push.fcm.caFile is ignored without push.fcm.endpoint'])
  t.equal(env.fake.tokenRequests.length + env.fake.messages.length, 0)
})

t.test('bad config is refused at creation, naming the key', async (t) => {
  const env = await setup(t)
  t.throws(() => env.sender({ serviceAccountFile: join(env.dir, 'missing.json') }), { message: 'push.fcm.serviceAccountFile: file not found' })
  const notJson = join(env.dir, 'not.json')
  await writeFile(notJson, '{ nope')
  t.throws(() => env.sender({ serviceAccountFile: notJson }), { message: 'push.fcm.serviceAccountFile: not valid JSON' })
  const noKey = join(env.dir, 'nokey.json')
  await writeFile(noKey, JSON.stringify({ type: 'service_account', project_id: 'p', client_email: 'e@x' }))
  t.throws(() => env.sender({ serviceAccountFile: noKey }), { message: 'push.fcm.serviceAccountFile: "private_key" is missing' })
  const badKey = join(env.dir, 'badkey.json')
  await writeFile(badKey, JSON.stringify({ type: 'service_account', project_id: 'p', client_email: 'e@x', private_key: 'not a key' }))
  t.throws(() => env.sender({ serviceAccountFile: badKey }), { message: /^push\.fcm\.serviceAccountFile: rejected by firebase-admin/ })
  t.throws(() => env.sender({ endpoint: 'http://localhost:1' }), { message: /^push\.fcm\.endpoint: must use https/ })
  t.throws(() => env.sender({ endpoint: 'https://localhost:1/v1' }), { message: /^push\.fcm\.endpoint:/ })
  t.throws(() => env.sender({ caFile: join(env.dir, 'nope.pem') }), { message: 'push.fcm.caFile: file not found' })
})
