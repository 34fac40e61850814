/**
 * The relay applies the ACL MQTT delivery applies, with the newest token its
 * user presented (issue 14, item 7): a device that subscribed to a group's
 * topics while its user was a member gets nothing more of them through FCM
 * once the user's later calls carry a token without the group. Real
 * firebase-admin against the local FCM server, which records what it got.
 */
import { spawn } from 'node:child_process'
import t, { type Test } from 'tap'
import { brokerEvent, connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { fcmDeviceToken, startProviderFakes, type ProviderFakes } from '../helpers/providers.js'
import { within } from '../helpers/within.js'

const nowSec = (): number => Math.floor(Date.now() / 1000)
/** Alice's token from when she was in ops: issued ten minutes ago. */
const aliceInOps = sign({ sub: 'alice', groups: ['ops'], iat: nowSec() - 600 })
/** Her token now: out of ops, and a deny filter of her own. */
const aliceNow = sign({ sub: 'alice', acl: { sub: ['!users/%u/private/#'] } })
const carol = sign({ sub: 'carol', groups: ['ops'] })
const backend = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })

/** Every topic the device subscribed to; only `users/alice/#` (less `private`) stays hers. */
const FILTERS = ['groups/ops/#', 'app/ops-only', 'users/alice/#']

interface Rig { broker: TestBroker, fakes: ProviderFakes, installationId: string }

/** An FCM device of alice's, subscribed to FILTERS while she was in ops, now offline. */
async function rig (t: Test): Promise<Rig> {
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: fakes.push } })
  const topic = await api(broker, 'PUT', '/v1/topics/ops-only', { token: admin, body: { acl: { subscribe: ['group:ops'], publish: ['role:service'] } } })
  t.equal(topic.status, 201)
  const created = await api(broker, 'POST', '/v1/installations', { token: aliceInOps, body: { pushToken: { provider: 'fcm', token: fcmDeviceToken() } } })
  t.equal(created.status, 201)
  const installationId = created.body.installationId as string
  const device = await connect(t, broker.mqttUrl, { clientId: installationId, clean: false, password: aliceInOps })
  t.strictSame((await device.subscribeAsync(FILTERS, { qos: 1 })).map((g) => g.qos), [1, 1, 1], 'granted while in ops')
  await device.endAsync()
  return { broker, fakes, installationId }
}

/** One message on each topic, published by someone allowed to; the relay jobs exist when the calls return. */
async function publishAll (broker: TestBroker, tag: string): Promise<void> {
  const calls = [
    await api(broker, 'POST', '/v1/publish', { token: carol, body: { topic: 'groups/ops/alerts', payload: `group ${tag}`, qos: 1 } }),
    await api(broker, 'POST', '/v1/push', { token: backend, body: { to: { topic: 'app/ops-only' }, data: { tag } } }),
    await api(broker, 'POST', '/v1/publish', { token: backend, body: { topic: 'users/alice/private/diary', payload: `private ${tag}`, qos: 1 } }),
    await api(broker, 'POST', '/v1/publish', { token: backend, body: { topic: 'users/alice/news', payload: `news ${tag}`, qos: 1 } }),
  ]
  for (const call of calls) if (call.status !== 202) throw new Error(`publish refused: ${call.text}`)
}

/** The topics FCM got for the device from message `from` on, once the outbox is empty. */
async function relayedTopics (rig: Rig, from: number): Promise<string[]> {
  await rig.fakes.fcm.waitForMessages(from + 1)
  await rig.broker.server.relay?.drain()
  return rig.fakes.fcm.messages.slice(from).map((m) => (m.message.data as Record<string, string>).topic ?? '?')
}

t.test('while alice is in ops, her offline device gets the group and app-topic messages through FCM', async (t) => {
  const r = await rig(t)
  await publishAll(r.broker, 'before')
  t.strictSame((await relayedTopics(r, 0)).sort(), ['app/ops-only', 'groups/ops/alerts', 'users/alice/news', 'users/alice/private/diary'])
})

t.test('after an HTTP call with a token without ops, the relay sends nothing of ops', async (t) => {
  const r = await rig(t)
  const call = await api(r.broker, 'GET', '/v1/installations', { token: aliceNow })
  t.equal(call.status, 200)
  await publishAll(r.broker, 'after')
  t.strictSame(await relayedTopics(r, 0), ['users/alice/news'], 'only what her newest token may read: no group, no app topic, no denied topic')

  // her old token, still valid on some other device, was issued before: it does not bring ops back
  t.equal((await api(r.broker, 'GET', '/v1/installations', { token: aliceInOps })).status, 200)
  await publishAll(r.broker, 'stale')
  t.strictSame(await relayedTopics(r, 1), ['users/alice/news'], 'an older token seen later changes nothing')

  // a service subscribing her installation is checked against the same newest token
  const subscribe = await api(r.broker, 'PUT', `/v1/installations/${r.installationId}/subscriptions/groups/ops/more`, { token: backend })
  t.equal(subscribe.status, 403)
  t.equal(subscribe.body.error.code, 'SUBSCRIBE_DENIED')
  const denied = await api(r.broker, 'PUT', `/v1/installations/${r.installationId}/subscriptions/users/alice/private/x`, { token: backend })
  t.equal(denied.status, 403, 'her deny filters too')

  // and that survives a restart
  await r.broker.stop()
  const restarted = { ...r, broker: await startBroker(t, { dataDir: r.broker.dataDir, overrides: { push: r.fakes.push } }) }
  await publishAll(restarted.broker, 'restarted')
  t.strictSame(await relayedTopics(restarted, 2), ['users/alice/news'], 'known after the restart')
})

t.test('after an MQTT CONNECT with a token without ops, the relay sends nothing of ops', async (t) => {
  const r = await rig(t)
  // another device of hers (a laptop, no installation) connects with her new token
  const laptop = await connect(t, r.broker.mqttUrl, { clientId: 'alice-laptop', clean: true, password: aliceNow })
  await laptop.endAsync()
  await publishAll(r.broker, 'after')
  t.strictSame(await relayedTopics(r, 0), ['users/alice/news'])
})

t.test('the device itself, as mosquitto_sub (persistent, with a will), brings a token without ops: its will and her news are relayed, nothing of ops', async (t) => {
  const r = await rig(t)
  // the device's own CONNECT records the newer token: its user owns an installation (the one it connects as)
  const args = ['-h', '127.0.0.1', '-p', String(r.broker.ports.mqtt), '-i', r.installationId, '-c', '-u', 'alice', '-P', aliceNow,
    '-t', 'users/alice/#', '-q', '1', '--will-topic', 'users/alice/status', '--will-payload', 'gone', '--will-qos', '1']
  const subscribed = brokerEvent(r.broker, 'subscribe', r.installationId)
  const device = spawn('mosquitto_sub', args, { stdio: 'ignore' })
  t.teardown(() => { device.kill('SIGKILL') })
  await within(10_000, 'mosquitto_sub subscribed', subscribed)
  // it dies without a DISCONNECT: its will goes to users/alice/status, which its own session is subscribed to
  const gone = brokerEvent(r.broker, 'clientDisconnect', r.installationId)
  device.kill('SIGKILL')
  await within(10_000, 'the broker sees the device gone', gone)
  await within(10_000, 'the will relayed to the offline device', r.fakes.fcm.waitForMessages(1))
  await publishAll(r.broker, 'after')
  t.strictSame(await relayedTopics(r, 0), ['users/alice/status', 'users/alice/news'], 'the will, then only what her newest token may read')
})

t.test('a push-only device registered with a token granting a topic: a service may subscribe it, and FCM gets the topic', async (t) => {
  // Herald keeps the principals of installation owners only; bob owns none when his registration call is
  // verified, so the registration itself must record him, or a service acting for him gets an owner with no grants
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: fakes.push } })
  const bob = sign({ sub: 'bob', acl: { sub: ['news/#'] } })
  const created = await api(broker, 'POST', '/v1/installations', { token: bob, body: { mqtt: false, pushToken: { provider: 'fcm', token: fcmDeviceToken() } } })
  t.equal(created.status, 201)
  const installationId = created.body.installationId as string
  const newsDesk = sign({ sub: 'news-desk', role: 'service', acl: { pub: ['news/#'] } })
  const subscribe = await api(broker, 'PUT', `/v1/installations/${installationId}/subscriptions/news/today`, { token: newsDesk })
  t.equal(subscribe.status, 200, 'checked against bob\'s grants')
  const published = await api(broker, 'POST', '/v1/publish', { token: newsDesk, body: { topic: 'news/today', payload: 'headline', qos: 1 } })
  t.equal(published.status, 202)
  await within(10_000, 'the news relayed to FCM', fakes.fcm.waitForMessages(1))
  t.strictSame(fakes.fcm.messages.map((m) => (m.message.data as Record<string, string>).topic), ['news/today'])
})
