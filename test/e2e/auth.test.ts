import { createHmac, generateKeyPairSync } from 'node:crypto'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connackCode, connect, nextMessage, sign, startBroker, TEST_SECRET } from '../helpers/broker.js'
import { connectInbox } from '../helpers/mqtt-inbox.js'

const WRONG_SECRET = 'a-wrong-secret-nobody-configured-32-bytes-plus'
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** An unsigned token (`alg: none`), built by hand since no library should make one. */
function unsignedToken (claims: Record<string, unknown>): string {
  return `${base64url({ alg: 'none', typ: 'JWT', kid: 'test' })}.${base64url(claims)}.`
}

/** HS256 "signed" with the RSA public key PEM as the HMAC secret (algorithm confusion). */
function confusedToken (claims: Record<string, unknown>): string {
  const input = `${base64url({ alg: 'HS256', typ: 'JWT', kid: 'rsa' })}.${base64url(claims)}`
  return `${input}.${createHmac('sha256', rsa.publicKey).update(input).digest('base64url')}`
}

const closeOf = async (client: MqttClient): Promise<void> => await new Promise((resolve) => client.once('close', () => resolve()))

/** The broker trusts the usual HS256 test key and an RS256 key, so algorithm confusion has a target. */
const twoKeys = {
  auth: {
    jwt: {
      keys: [
        { kid: 'test', alg: 'HS256', secret: TEST_SECRET },
        { kid: 'rsa', alg: 'RS256', publicKey: rsa.publicKey },
      ],
    },
  },
}

t.test('CONNACK codes for good and bad credentials; nothing about a token is logged', async (t) => {
  const broker = await startBroker(t, { overrides: twoKeys, captureLogs: true })
  const now = Math.floor(Date.now() / 1000)

  const accepted: Array<[string, string]> = [
    ['valid HS256', sign({ sub: 'alice' })],
    ['valid RS256', sign({ sub: 'alice' }, { algorithm: 'RS256', secret: rsa.privateKey, kid: 'rsa' })],
  ]
  const refusedBadCredentials: Array<[string, string | undefined]> = [
    ['expired', sign({ sub: 'alice', exp: now - 120 })],
    ['not yet valid', sign({ sub: 'alice' }, { notBefore: 120 })],
    // auth.jwt.requireExp and maxTtlSec (defaults), iat beyond the clock tolerance
    ['no exp', sign({ sub: 'alice' }, { expiresIn: null })],
    ['exp 1e20', sign({ sub: 'alice', exp: 1e20 })],
    ['iat a day ahead', sign({ sub: 'alice', iat: now + 86400, exp: now + 90000 })],
    // two keys configured: the token must name its key
    ['no kid', sign({ sub: 'alice' }, { kid: null })],
    ['wrong key', sign({ sub: 'alice' }, { secret: WRONG_SECRET })],
    ['unknown kid', sign({ sub: 'alice' }, { kid: 'nobody' })],
    ['alg none', unsignedToken({ sub: 'alice', role: 'admin' })],
    ['HS/RS confusion', confusedToken({ sub: 'alice', role: 'admin' })],
    ['missing sub', sign({ role: 'admin' })],
    ['sub with /', sign({ sub: 'alice/x' })],
    ['bad role', sign({ sub: 'alice', role: 'root' })],
    // over auth.jwt.maxTokenBytes (8192) in a CONNECT within limits.maxConnectBytes; a larger CONNECT is closed unread (pre-auth.test.ts)
    ['oversized token', sign({ sub: 'alice', pad: 'x'.repeat(6500) })],
    ['garbage', 'not-a-jwt'],
    ['no password', undefined],
  ]

  for (const [name, token] of accepted) {
    t.equal(await connackCode(broker.mqttUrl, { clientId: `ok-${name.replace(/\W/g, '')}`, username: 'alice', password: token }), 0, name)
  }
  for (const [name, token] of refusedBadCredentials) {
    const options = token === undefined ? {} : { username: 'alice', password: token }
    t.equal(await connackCode(broker.mqttUrl, { clientId: `bad-${name.replace(/\W/g, '')}`, ...options }), 4, name)
  }
  // a good token that may not connect as asked: its will topic is someone else's
  const will = { topic: 'users/bob/status', payload: Buffer.from('gone'), qos: 0 as const, retain: false }
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'alice-will', username: 'alice', password: sign({ sub: 'alice' }), will }), 5, 'will topic not allowed')

  const refusals = broker.logs.filter((entry) => entry.msg === 'connection refused')
  t.equal(refusals.length, refusedBadCredentials.length + 1, 'every refusal was logged (the check below is not vacuous)')
  const text = broker.logText()
  const tokens = [...accepted, ...refusedBadCredentials].map(([, token]) => token).filter((token) => token !== undefined)
  const signatures = tokens.map((token) => token.split('.')[2] ?? '').filter((signature) => signature.length >= 16)
  const leaked = [TEST_SECRET, rsa.privateKey, ...tokens, ...signatures].filter((needle) => text.includes(needle))
  t.equal(leaked.length, 0, 'the log holds no token, token signature or secret')
})

t.test('anonymous mode', async (t) => {
  const broker = await startBroker(t, {
    overrides: { auth: { anonymous: { enabled: true, acl: { pub: ['public/#'], sub: ['public/#'] } } } },
  })

  t.test('still refuses a bad token rather than falling back to anonymous', async (t) => {
    t.equal(await connackCode(broker.mqttUrl, { username: 'x', password: sign({ sub: 'x' }, { secret: WRONG_SECRET }) }), 4)
  })

  t.test('a client without credentials uses public/# only', async (t) => {
    const owner = await connectInbox(t, broker.mqttUrl, { clientId: 'x-owner', username: 'x', password: sign({ sub: 'x' }) })
    await owner.client.subscribeAsync('users/x/#', { qos: 1 })

    const anon = await connect(t, broker.mqttUrl, { clientId: 'anon-1' })
    const granted = await anon.subscribeAsync('public/#', { qos: 1 })
    t.same(granted.map((g) => g.qos), [1], 'public/# granted')
    const news = nextMessage(anon, 'public/news')
    await anon.publishAsync('public/news', 'hello', { qos: 1 })
    t.equal((await news).payload.toString(), 'hello')

    const refusal = await anon.subscribeAsync('users/x/#', { qos: 1 }).then(() => 'granted', (err: unknown) => err)
    t.match(refusal, { packet: { granted: [128] } }, 'users/x/# refused in the SUBACK')
    t.ok(anon.connected, 'a refused subscription leaves the connection open')

    // [MQTT-3.3.5-2] a denied publish closes the connection (MQTT 3.1.1 has no negative PUBACK)
    const closed = closeOf(anon)
    anon.publish('users/x/notes', 'from anonymous', { qos: 0 })
    await closed

    // the owner of users/x sees its own marker and nothing before it
    await owner.client.publishAsync('users/x/marker', 'm', { qos: 1 })
    await owner.waitFor(1)
    t.same(owner.messages.map((message) => message.topic), ['users/x/marker'], 'the denied publish was not delivered')
  })
})

t.test('anonymous mode is off by default', async (t) => {
  const broker = await startBroker(t)
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'anon' }), 4)
})

t.test('a connection is closed when its token expires', { timeout: 15000 }, async (t) => {
  // the connection lives until exp plus the clock tolerance, when the token stops being accepted
  const toleranceSec = 1
  const broker = await startBroker(t, { captureLogs: true, overrides: { auth: { jwt: { clockToleranceSec: toleranceSec } } } })
  // exp has whole seconds: 1 to 2 s from now
  const exp = Math.ceil(Date.now() / 1000) + 1
  const token = sign({ sub: 'alice', exp })
  const client = await connect(t, broker.mqttUrl, { clientId: 'alice-expiring', username: 'alice', password: token })
  t.ok(Date.now() < exp * 1000, 'connected before exp')
  await closeOf(client)
  const closedAt = Date.now()
  const deadline = (exp + toleranceSec) * 1000
  t.ok(closedAt >= deadline, `closed at or after exp + tolerance (${closedAt - deadline} ms after)`)
  t.notOk(client.connected, 'the client saw the connection go')
  // logged before the broker closes the socket, so it is there by the time the client sees the close
  t.ok(broker.logs.some((entry) => entry.msg === 'token expired; closing the connection' && entry.clientId === 'alice-expiring'), 'the broker closed it for expiry')
})
