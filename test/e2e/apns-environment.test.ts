/**
 * Which APNs gateway a device's pushes go to (issue 13, item 4). A token registered
 * without `environment` follows `push.apns.production` at send time; one registered
 * with it keeps it.
 *
 * node-apn picks the gateway from its `production` option: api.push.apple.com or
 * api.sandbox.push.apple.com, unless `push.apns.host` replaces both. So these tests
 * leave `push.apns.host` unset and let node-apn dial Apple's real host names, which
 * resolve here to the local fake (its certificate names both hosts), and observe the
 * host name node-apn looked up and sent as `:authority`.
 */
import { generateKeyPairSync } from 'node:crypto'
import dns from 'node:dns'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { makeTempDir, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { apnsDeviceToken } from '../helpers/providers.js'
import { startFakeApns, type FakeApns } from '../fakes/apns-server.js'

const PRODUCTION = 'api.push.apple.com'
const SANDBOX = 'api.sandbox.push.apple.com'
const TOPIC = 'com.example.herald'
const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))

const alice = sign({ sub: 'alice' })
const backend = sign({ sub: 'backend', role: 'service' })

/** Apple's two host names resolve to 127.0.0.1 in this process; every lookup of them is recorded. */
function appleHostsToLocalhost (t: Test): string[] {
  const looked: string[] = []
  const original = dns.lookup
  const patched = (hostname: string, options: unknown, callback?: unknown): void => {
    const cb = (typeof options === 'function' ? options : callback) as (...args: unknown[]) => void
    const opts = (typeof options === 'object' && options !== null ? options : {}) as { all?: boolean }
    if (hostname !== PRODUCTION && hostname !== SANDBOX) {
      (original as (...args: unknown[]) => void)(hostname, options, callback)
      return
    }
    looked.push(hostname)
    process.nextTick(() => opts.all === true ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4))
  }
  dns.lookup = patched as typeof dns.lookup
  t.teardown(() => { dns.lookup = original })
  return looked
}

interface Rig { readonly fake: FakeApns, readonly push: (production: boolean) => Record<string, unknown> }

async function rig (t: Test): Promise<Rig> {
  const dir = await makeTempDir(t, 'herald-apns-env-')
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const keyFile = join(dir, 'AuthKey_KEY1234567.p8')
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const fake = await startFakeApns({
    publicKey, keyId: 'KEY1234567', teamId: 'TEAM123456', topics: [TOPIC],
    certFile: fixture('apple-hosts-cert.pem'), keyFile: fixture('apple-hosts-key.pem'),
  })
  t.teardown(async () => await fake.close())
  return {
    fake,
    push: (production) => ({
      apns: { keyFile, keyId: 'KEY1234567', teamId: 'TEAM123456', topic: TOPIC, production, port: fake.port, caFile: fixture('apple-hosts-cert.pem') },
    }),
  }
}

async function register (broker: TestBroker, pushToken: Record<string, unknown>): Promise<{ id: string, view: any }> {
  const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken, mqtt: false } })
  if (created.status !== 201) throw new Error(`registration failed: ${created.text}`)
  return { id: created.body.installationId as string, view: created.body.installation }
}

/** Pushes to one installation and returns the host its APNs request went to. */
async function hostOfPush (broker: TestBroker, fake: FakeApns, installation: string): Promise<string | undefined> {
  const before = fake.answered
  const response = await api(broker, 'POST', '/v1/push', { token: backend, body: { to: { installation }, notification: { title: 'Hi' } } })
  if (response.status !== 202) throw new Error(`push failed: ${response.text}`)
  const requests = await fake.waitForRequests(before + 1)
  await broker.server.relay?.drain()
  const request = requests[before]
  if (request?.status !== 200) throw new Error(`APNs answered ${request?.status ?? 'nothing'} ${request?.reason ?? ''}`)
  return request.headers[':authority']?.replace(/:\d+$/, '')
}

for (const production of [false, true]) {
  const configured = production ? PRODUCTION : SANDBOX
  const other = production ? SANDBOX : PRODUCTION
  t.test(`push.apns.production: ${String(production)}`, async (t) => {
    const looked = appleHostsToLocalhost(t)
    const { fake, push } = await rig(t)
    const broker = await startBroker(t, { overrides: { push: push(production) } })

    const unset = await register(broker, { provider: 'apns', token: apnsDeviceToken() })
    t.equal(unset.view.pushToken.environment, null, 'stored as sent: no environment')
    t.equal(unset.view.pushToken.effectiveEnvironment, production ? 'production' : 'development', 'the configured default is the effective one')
    t.equal(await hostOfPush(broker, fake, unset.id), configured, 'a token without environment goes where the config says')

    const pinned = await register(broker, { provider: 'apns', token: apnsDeviceToken(), environment: production ? 'development' : 'production' })
    t.equal(pinned.view.pushToken.environment, production ? 'development' : 'production')
    t.equal(pinned.view.pushToken.effectiveEnvironment, production ? 'development' : 'production')
    t.equal(await hostOfPush(broker, fake, pinned.id), other, 'a token with an environment keeps it')

    t.strictSame([...new Set(looked)].sort(), [PRODUCTION, SANDBOX].sort(), 'node-apn dialled Apple host names, resolved to the fake')
  })
}

t.test('the default is applied at send time: a config change moves tokens that named no environment', async (t) => {
  const looked = appleHostsToLocalhost(t)
  const { fake, push } = await rig(t)
  const dataDir = await makeTempDir(t)
  const first = await startBroker(t, { dataDir, overrides: { push: push(true) } })
  const unset = await register(first, { provider: 'apns', token: apnsDeviceToken() })
  const pinned = await register(first, { provider: 'apns', token: apnsDeviceToken(), environment: 'production' })
  t.equal(await hostOfPush(first, fake, unset.id), PRODUCTION)
  await first.stop()

  const second = await startBroker(t, { dataDir, overrides: { push: push(false) } })
  t.equal(await hostOfPush(second, fake, unset.id), SANDBOX, 'follows push.apns.production')
  t.equal(await hostOfPush(second, fake, pinned.id), PRODUCTION, 'a stored environment is kept')
  const view = (await api(second, 'GET', `/v1/installations/${unset.id}`, { token: alice })).body
  t.match(view.pushToken, { environment: null, effectiveEnvironment: 'development' })
  t.ok(looked.length > 0)
})

t.test('FCM tokens have no environment unless one was sent', async (t) => {
  const broker = await startBroker(t)
  const fcm = await register(broker, { provider: 'fcm', token: 'fcm-registration-token-0123456789' })
  t.match(fcm.view.pushToken, { provider: 'fcm', environment: null, effectiveEnvironment: null })
})
