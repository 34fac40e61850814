/**
 * The relay end to end: real MQTT clients, the HTTP API, and Herald's real
 * firebase-admin and @parse/node-apn talking to local FCM and APNs servers.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { connect, makeTempDir, sign, startBroker, TEST_SECRET, type TestBroker } from '../helpers/broker.js'
import { spawnBroker } from '../helpers/child-broker.js'
import { api } from '../helpers/http.js'
import { apnsDeviceToken, fcmDeviceToken, startProviderFakes, type ProviderFakes } from '../helpers/providers.js'

const alice = sign({ sub: 'alice' })
const backend = sign({ sub: 'backend', role: 'service' })

interface Rig { broker: TestBroker, fakes: ProviderFakes }

async function rig (t: Test): Promise<Rig> {
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: fakes.push } })
  return { broker, fakes }
}

async function register (broker: TestBroker, pushToken: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken, ...extra } })
  if (created.status !== 201) throw new Error(`registration failed: ${created.text}`)
  return created.body.installationId as string
}

/** The device connects once (its session exists), then goes away; resolves when the broker saw it go. */
async function connectAndLeave (t: Test, broker: TestBroker, clientId: string, subscribe?: string): Promise<void> {
  const aedes = broker.server.broker?.aedes
  if (aedes === undefined) throw new Error('broker not started')
  const device = await connect(t, broker.mqttUrl, { clientId, clean: false, password: alice })
  if (subscribe !== undefined) await device.subscribeAsync(subscribe, { qos: 1 })
  const gone = new Promise<void>((resolve) => {
    const onDisconnect = (client: { id: string }): void => {
      if (client.id !== clientId) return
      aedes.off('clientDisconnect', onDisconnect)
      resolve()
    }
    aedes.on('clientDisconnect', onDisconnect)
  })
  await device.endAsync()
  await gone
}

async function push (broker: TestBroker, body: Record<string, unknown>): Promise<string> {
  const response = await api(broker, 'POST', '/v1/push', { token: backend, body })
  if (response.status !== 202) throw new Error(`push failed: ${response.text}`)
  return response.body.id as string
}

async function drain (broker: TestBroker): Promise<void> {
  await broker.server.relay?.drain()
}

t.test('an offline APNs device gets the push exactly once through APNs, and over MQTT when it returns', async (t) => {
  const { broker, fakes } = await rig(t)
  const token = apnsDeviceToken()
  const id = await register(broker, { provider: 'apns', token })
  await connectAndLeave(t, broker, id)

  const messageId = await push(broker, { to: { user: 'alice' }, notification: { title: 'Hi', body: 'there' }, data: { order: '42' }, apns: { sound: 'default', badge: 3 } })
  const [request] = await fakes.apns.waitForRequests(1)
  await drain(broker)
  t.equal(fakes.apns.requests.length, 1, 'exactly one APNs request')
  t.equal(request?.token, token)
  t.equal(request?.status, 200)
  t.equal(request?.headers['apns-push-type'], 'alert')
  t.match(request?.json, { aps: { alert: { title: 'Hi', body: 'there' }, sound: 'default', badge: 3 }, order: '42', messageId, topic: 'users/alice/inbox' })

  const received: Array<{ topic: string, id: string }> = []
  const arrived = new Promise<void>((resolve) => {
    void connect(t, broker.mqttUrl, { clientId: id, clean: false, password: alice }, (topic, payload) => {
      received.push({ topic, id: (JSON.parse(payload.toString()) as { id: string }).id })
      resolve()
    })
  })
  await arrived
  t.same(received, [{ topic: 'users/alice/inbox', id: messageId }], 'the MQTT copy carries the same id')
})

t.test('a connected device gets no relay', async (t) => {
  const { broker, fakes } = await rig(t)
  const id = await register(broker, { provider: 'fcm', token: fcmDeviceToken() })
  const device = await connect(t, broker.mqttUrl, { clientId: id, clean: false, password: alice })
  const onMqtt = new Promise<string>((resolve) => device.once('message', (_topic, payload) => resolve(payload.toString())))
  const messageId = await push(broker, { to: { user: 'alice' }, notification: { title: 'live' } })
  t.match(JSON.parse(await onMqtt), { id: messageId })
  await drain(broker)
  t.equal(fakes.fcm.messages.length, 0)
  t.equal(fakes.apns.requests.length, 0)
})

t.test('an offline FCM device gets notification and data through FCM', async (t) => {
  const { broker, fakes } = await rig(t)
  const token = fcmDeviceToken()
  const id = await register(broker, { provider: 'fcm', token })
  await connectAndLeave(t, broker, id)
  const messageId = await push(broker, { to: { user: 'alice' }, notification: { title: 'Hi' }, data: { k: 'v' }, fcm: { priority: 'high', collapseKey: 'c1' } })
  const [sent] = await fakes.fcm.waitForMessages(1)
  await drain(broker)
  t.equal(fakes.fcm.messages.length, 1)
  t.equal(sent?.token, token)
  t.match(sent?.message, { notification: { title: 'Hi' }, data: { k: 'v', messageId, topic: 'users/alice/inbox' }, android: { priority: 'high', collapse_key: 'c1' } })
})

t.test('a raw QoS1 MQTT message to an offline device relays as {topic, messageId, payload}', async (t) => {
  const { broker, fakes } = await rig(t)
  const id = await register(broker, { provider: 'fcm', token: fcmDeviceToken() })
  await connectAndLeave(t, broker, id, 'users/alice/#')
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend-1', password: backend })
  await server.publishAsync('users/alice/news', 'plain text', { qos: 1 })
  const [sent] = await fakes.fcm.waitForMessages(1)
  await drain(broker)
  t.equal(fakes.fcm.messages.length, 1, 'relayed once, not once per write of the message')
  t.match(sent?.message, { data: { topic: 'users/alice/news', payload: 'plain text' } })
  t.type((sent?.message.data as Record<string, string> | undefined)?.messageId, 'string')
})

t.test('tokens the providers reject are pruned and not used again', async (t) => {
  const { broker, fakes } = await rig(t)
  const apnsToken = apnsDeviceToken()
  const fcmToken = fcmDeviceToken()
  const apnsId = await register(broker, { provider: 'apns', token: apnsToken })
  const fcmId = await register(broker, { provider: 'fcm', token: fcmToken, environment: 'production' }, { mqtt: false })
  fakes.apns.respond(apnsToken, { status: 410, reason: 'Unregistered' })
  fakes.fcm.script(fcmToken, 'UNREGISTERED', 'always')

  await push(broker, { to: { user: 'alice' }, notification: { title: 'first' } })
  await fakes.apns.waitForRequests(1)
  await fakes.fcm.waitForMessages(1)
  await drain(broker)
  for (const id of [apnsId, fcmId]) {
    const installation = await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })
    t.equal(installation.body.pushToken, null, `${id}: token removed`)
  }
  const metrics = await api(broker, 'GET', '/metrics')
  t.match(metrics.text, /herald_relay_pruned_total\{provider="apns"\} 1/)
  t.match(metrics.text, /herald_relay_pruned_total\{provider="fcm"\} 1/)

  await push(broker, { to: { user: 'alice' }, notification: { title: 'second' } })
  await drain(broker)
  t.equal(fakes.apns.requests.length, 1, 'no second APNs request')
  t.equal(fakes.fcm.messages.length, 1, 'no second FCM request')
})

t.test('transient provider errors are retried until accepted', async (t) => {
  const { broker, fakes } = await rig(t)
  const token = apnsDeviceToken()
  await register(broker, { provider: 'apns', token }, { mqtt: false })
  fakes.apns.respond(token, { status: 503, reason: 'ServiceUnavailable', times: 2 })
  await push(broker, { to: { user: 'alice' }, notification: { title: 'eventually' } })
  await drain(broker)
  t.same(fakes.apns.requests.map((r) => r.status), [503, 503, 200])
  const metrics = await api(broker, 'GET', '/metrics')
  t.match(metrics.text, /herald_relay_retried_total\{provider="apns"\} 2/)
  t.match(metrics.text, /herald_relay_sent_total\{provider="apns"\} 1/)
})

t.test('fcm.enabled=false skips FCM; over-large content becomes a wake-up', async (t) => {
  const { broker, fakes } = await rig(t)
  const apnsToken = apnsDeviceToken()
  await register(broker, { provider: 'fcm', token: fcmDeviceToken() }, { mqtt: false })
  await register(broker, { provider: 'apns', token: apnsToken }, { mqtt: false })
  await push(broker, { to: { user: 'alice' }, notification: { title: 'apns only' }, fcm: { enabled: false } })
  await fakes.apns.waitForRequests(1)
  await drain(broker)
  t.equal(fakes.fcm.messages.length, 0)

  // a raw message far over 4 KB: relayed as a wake-up without the payload
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend-1', password: backend })
  await server.publishAsync('users/alice/inbox', 'x'.repeat(10_000), { qos: 1 })
  const requests = await fakes.apns.waitForRequests(2)
  await drain(broker)
  const wake = requests[1]?.json as Record<string, unknown>
  t.equal(wake.truncated, true)
  t.notOk('payload' in wake)
  t.equal(requests[1]?.headers['apns-push-type'], 'background')
})

t.test('relay jobs in the outbox survive kill -9 and are sent after the restart', async (t) => {
  const fakes = await startProviderFakes(t)
  const dataDir = await makeTempDir(t)
  const configFile = join(dataDir, 'herald.json')
  // retries far enough apart that the broker is killed while the job waits in the outbox
  await writeFile(configFile, JSON.stringify({ push: { ...fakes.push, retryBaseMs: 1000, retryMaxMs: 1000 } }))
  const env = { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET, HERALD_CONFIG: configFile }
  const token = apnsDeviceToken()
  // the first attempt fails; APNs answers 200 from then on
  fakes.apns.respond(token, { status: 503, reason: 'ServiceUnavailable', times: 1 })

  const first = await spawnBroker(t, env)
  const base = `http://127.0.0.1:${first.ports.http}`
  const kidless = (claims: Record<string, unknown>): string => sign(claims, { kid: null })
  const created = await fetch(`${base}/v1/installations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${kidless({ sub: 'alice' })}`, 'content-type': 'application/json' },
    body: JSON.stringify({ mqtt: false, pushToken: { provider: 'apns', token } }),
  })
  t.equal(created.status, 201)
  const accepted = await fetch(`${base}/v1/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${kidless({ sub: 'backend', role: 'service' })}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to: { user: 'alice' }, notification: { title: 'survivor' } }),
  })
  t.equal(accepted.status, 202)
  const { id: messageId } = await accepted.json() as { id: string }
  await fakes.apns.waitForRequests(1)
  first.child.kill('SIGKILL')
  t.equal(await first.exited, 'SIGKILL')

  await spawnBroker(t, env)
  const requests = await fakes.apns.waitForRequests(2)
  const delivered = requests.filter((r) => r.status === 200)
  t.equal(delivered.length, 1, 'sent after the restart')
  t.not(requests[1]?.session, requests[0]?.session, 'by the restarted broker')
  t.match(delivered[0]?.json, { messageId, aps: { alert: { title: 'survivor' } } })
})
