import type { MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import { connackCode, connackOf, connect, makeTempDir, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import type { Database } from '../../src/store/open-store.js'
import { outgoingPrefix, prefixRange } from '../../src/store/session-keys.js'
import { connectInbox, text } from '../helpers/mqtt-inbox.js'
import { eventually } from '../helpers/eventually.js'

// Bounds on per-device state (issue 14, item 3): queued messages per session,
// session expiry, subscriptions per client. Real LevelDB in temp dirs, real
// mqtt.js clients, restarts on the same data directory.

const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })

/** The SUBACK's return codes (mqtt.js rejects subscribeAsync when one is 0x80). */
async function suback (client: MqttClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  return await new Promise((resolve, reject) => {
    client.subscribe(filters, { qos }, (err, _granted, packet) => {
      if (packet === undefined) reject(err ?? new Error('no SUBACK'))
      else resolve(packet.granted.map(Number))
    })
  })
}

/** A persistent session of alice subscribed to `filter` at QoS 1, then disconnected (the broker has seen it go). */
async function offlineSession (t: Test, broker: TestBroker, clientId: string, filter: string, token = alice): Promise<void> {
  const client = await connect(t, broker.mqttUrl, { clientId, clean: false, password: token })
  t.same((await client.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos), [1], `${clientId} subscribed to ${filter}`)
  await client.endAsync()
  await eventually(`${clientId} is gone`, () => broker.server.broker?.port.isConnected(clientId) === false)
}

async function publishAll (publisher: MqttClient, topic: string, bodies: readonly string[]): Promise<void> {
  // sequential: each PUBACK means the message is in the queues
  for (const body of bodies) await publisher.publishAsync(topic, body, { qos: 1 })
}

/**
 * The messages a persistent session gets when it reconnects: its queue, up to
 * a marker sent after it (to a topic only this client is subscribed to, so no
 * other session queues it; `markerTopic` names one it holds already).
 */
async function reconnectAndDrain (t: Test, broker: TestBroker, clientId: string, markerTopic?: string): Promise<string[]> {
  return (await reconnect(t, broker, clientId, markerTopic)).messages
}

async function reconnect (t: Test, broker: TestBroker, clientId: string, markerTopic?: string): Promise<{ sessionPresent: boolean, messages: string[] }> {
  const inbox = await connectInbox(t, broker.mqttUrl, { clientId, clean: false, password: alice }, { readyOn: broker })
  const topic = markerTopic ?? `users/alice/to/${clientId}`
  if (markerTopic === undefined) await inbox.client.subscribeAsync(topic, { qos: 0 })
  const publisher = await connect(t, broker.mqttUrl, { clientId: `marker-${clientId}`, password: service })
  await publisher.publishAsync(topic, 'marker', { qos: 1 })
  await publisher.endAsync()
  const received: string[] = []
  for (;;) {
    const body = text(await inbox.next())
    if (body === 'marker') break
    received.push(body)
  }
  await inbox.client.endAsync()
  return { sessionPresent: inbox.connack.sessionPresent, messages: received }
}

async function counter (broker: TestBroker, name: string): Promise<number> {
  const res = await api(broker, 'GET', '/metrics')
  const line = res.text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

const range = (from: number, to: number, prefix: string): string[] => Array.from({ length: to - from + 1 }, (_, i) => `${prefix}${from + i}`)

t.test('a full queue keeps its newest limits.maxQueuedMessagesPerSession messages, across a restart', async (t) => {
  const dataDir = await makeTempDir(t)
  const overrides = { limits: { maxQueuedMessagesPerSession: 5 } }
  const first = await startBroker(t, { dataDir, overrides })
  // two sessions on one topic (a fan-out: one record, queue entries written later) and one alone on another
  await offlineSession(t, first, 'phone-a', 'users/alice/news')
  await offlineSession(t, first, 'phone-b', 'users/alice/news')
  await offlineSession(t, first, 'phone-c', 'users/alice/solo')
  const publisher = await connect(t, first.mqttUrl, { clientId: 'backend-1', password: service })
  await publishAll(publisher, 'users/alice/news', range(1, 8, 'n'))
  await publishAll(publisher, 'users/alice/solo', range(1, 8, 's'))
  await publisher.endAsync()
  // a trim nobody waits for may still be running: its drops are counted once it is done
  await first.server.broker?.sessions.flush()
  const droppedBefore = await counter(first, 'herald_session_queue_dropped_total')
  await first.stop()

  const second = await startBroker(t, { dataDir, overrides })
  const again = await connect(t, second.mqttUrl, { clientId: 'backend-2', password: service })
  await publishAll(again, 'users/alice/news', range(9, 11, 'n'))
  await publishAll(again, 'users/alice/solo', range(9, 11, 's'))
  await again.endAsync()

  // the newest five, in the order they were published, before and after the restart
  t.same(await reconnectAndDrain(t, second, 'phone-a'), range(7, 11, 'n'))
  t.same(await reconnectAndDrain(t, second, 'phone-b'), range(7, 11, 'n'))
  t.same(await reconnectAndDrain(t, second, 'phone-c'), range(7, 11, 's'))
  // 6 of 11 dropped from each of the three queues, each counted once
  t.equal(droppedBefore + await counter(second, 'herald_session_queue_dropped_total'), 18, 'every drop counted')

  // what is left is what a later message finds: the queue holds the newest five again
  const later = await connect(t, second.mqttUrl, { clientId: 'backend-3', password: service })
  await publishAll(later, 'users/alice/solo', range(12, 13, 's'))
  t.same(await reconnectAndDrain(t, second, 'phone-c'), range(12, 13, 's'), 'acknowledged messages left the queue and its count')
})

t.test('an offline queue stays within the bound on disk while messages keep coming', async (t) => {
  let db: Database | undefined
  const broker = await startBroker(t, { overrides: { limits: { maxQueuedMessagesPerSession: 10 } }, serverOptions: { onDatabaseOpen: (opened) => { db = opened } } })
  await offlineSession(t, broker, 'phone', 'users/alice/#')
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  await publishAll(publisher, 'users/alice/news', range(1, 200, 'm'))
  const sessions = broker.server.broker?.sessions
  if (sessions === undefined) throw new Error('broker not running')
  await sessions.flush()
  // the bound plus its slack (a tenth): never the 200 published
  t.ok(db !== undefined, 'the store was opened')
  let onDisk = 0
  for await (const _ of db?.sublevel('sessions', { valueEncoding: 'buffer' }).keys(prefixRange(outgoingPrefix('phone'))) ?? []) onDisk++
  t.ok(onDisk >= 10 && onDisk <= 11, `${onDisk} queued on disk for a bound of 10`)
  t.same(await reconnectAndDrain(t, broker, 'phone'), range(191, 200, 'm'))
})

t.test('a session unused for limits.sessionExpirySec is deleted at start, with its queue and its client id claim', async (t) => {
  const dataDir = await makeTempDir(t)
  let offsetMs = 0
  const hour = 3_600_000
  const options = {
    dataDir,
    overrides: { limits: { sessionExpirySec: 2 * 3600, sessionExpirySweepSec: 3600 } },
    serverOptions: { now: () => Date.now() + offsetMs },
  }
  const first = await startBroker(t, options)
  await offlineSession(t, first, 'old-phone', 'users/alice/#')
  const created = await api<{ installationId: string }>(first, 'POST', '/v1/installations', { token: alice, body: {} })
  t.equal(created.status, 201)
  const installation = created.body.installationId
  // the installation's device connects once and leaves
  const device = await connect(t, first.mqttUrl, { clientId: installation, clean: false, password: alice })
  await device.endAsync()
  await eventually('the installation is gone', () => first.server.broker?.port.isConnected(installation) === false)

  offsetMs = 1.5 * hour
  await offlineSession(t, first, 'young-phone', 'users/alice/#')
  const publisher = await connect(t, first.mqttUrl, { clientId: 'backend', password: service })
  await publishAll(publisher, 'users/alice/news', ['q1', 'q2'])
  await publishAll(publisher, 'users/alice/inbox', ['direct'])
  await publisher.endAsync()
  await first.stop()

  // 2.5 h after old-phone and the installation were last seen, 1 h after young-phone
  offsetMs = 2.5 * hour
  const second = await startBroker(t, options)
  // its client id is no longer alice's
  t.equal(await connackCode(second.mqttUrl, { clientId: 'old-phone', clean: true, password: bob }), 0, 'another user may use the expired client id')
  // and nothing of the session is left: no subscriptions, no queued messages
  t.same(await reconnect(t, second, 'old-phone'), { sessionPresent: false, messages: [] }, 'the expired session is gone, queue included')

  // the young session is intact
  t.same(await reconnect(t, second, 'young-phone'), { sessionPresent: true, messages: ['q1', 'q2', 'direct'] }, 'the young session kept its queue')

  // the installation lost its queue, and keeps its subscriptions and its id
  t.same(await reconnectAndDrain(t, second, installation), [], 'its queued message expired')
  const subs = await api<{ subscriptions: Array<{ topic: string }> }>(second, 'GET', `/v1/installations/${installation}/subscriptions`, { token: alice })
  t.same(subs.body.subscriptions.map((s) => s.topic).sort(), ['users/alice/inbox', `users/alice/to/${installation}`], 'it keeps its subscriptions')
  t.equal(await connackCode(second.mqttUrl, { clientId: installation, clean: false, password: bob }), 5, 'its id stays claimed')

  const metrics = (await api(second, 'GET', '/metrics')).text
  t.match(metrics, /herald_sessions_expired_total\{kind="session"\} 1\n/)
  t.match(metrics, /herald_sessions_expired_total\{kind="queue"\} 1\n/)
})

t.test('the periodic sweep deletes a session once it has been unused for limits.sessionExpirySec', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { sessionExpirySec: 1, sessionExpirySweepSec: 1 } } })
  await offlineSession(t, broker, 'brief-phone', 'users/alice/#')
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  await publishAll(publisher, 'users/alice/news', ['soon gone'])
  // a connected session never expires, however long it stays
  const stays = await connect(t, broker.mqttUrl, { clientId: 'connected-phone', clean: false, password: alice })
  await eventually('a sweep expired the session', async () => /herald_sessions_expired_total\{kind="session"\} 1\n/.test((await api(broker, 'GET', '/metrics')).text))
  const fresh = await connect(t, broker.mqttUrl, { clientId: 'brief-phone', clean: false, password: bob })
  t.equal(connackOf(fresh).sessionPresent, false, 'its client id was released, and nothing of the session is left')
  const sessions = broker.server.broker?.sessions
  t.same(await sessions?.sessionState('brief-phone'), { subscriptions: false, will: false, queue: false }, 'its queued message is gone')
  t.ok(stays.connected, 'the connected session is untouched')
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'connected-phone', clean: false, password: bob }), 5, 'and keeps its claim')
})

t.test('SUBACK 0x80 for filters beyond limits.maxSubscriptionsPerClient, and none of them stored in the session', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxSubscriptionsPerClient: 3 } } })
  const client = await connect(t, broker.mqttUrl, { clientId: 'greedy', clean: false, password: alice })
  t.same(await suback(client, ['users/alice/a', 'users/alice/b', 'users/alice/c', 'users/alice/d', 'users/alice/e']), [1, 1, 1, 128, 128], 'three granted, the rest refused')
  t.same(await suback(client, ['users/alice/f']), [128], 'a later SUBSCRIBE beyond the limit')
  t.same(await suback(client, ['users/alice/a'], 0), [0], 'a filter it holds may be subscribed again')
  t.same((await broker.server.broker?.port.subscriptions('greedy'))?.map((s) => s.topic).sort(), ['users/alice/a', 'users/alice/b', 'users/alice/c'], 'refused filters are not in the persistent session')
  await client.unsubscribeAsync('users/alice/b')
  t.same(await suback(client, ['users/alice/f']), [1], 'room again after an UNSUBSCRIBE')

  // refused filters queue nothing while the session is offline
  await client.endAsync()
  await eventually('greedy is gone', () => broker.server.broker?.port.isConnected('greedy') === false)
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  await publishAll(publisher, 'users/alice/d', ['refused filter'])
  await publishAll(publisher, 'users/alice/f', ['granted filter'])
  t.same(await reconnectAndDrain(t, broker, 'greedy', 'users/alice/c'), ['granted filter'])

  // a clean session: counted the same way
  const clean = await connect(t, broker.mqttUrl, { clientId: 'clean', password: alice })
  t.same(await suback(clean, ['users/alice/1', 'users/alice/2', 'users/alice/3', 'users/alice/4'], 0), [0, 0, 0, 128])
})

t.test('a filter unsubscribed between two SUBSCRIBEs no longer counts against limits.maxSubscriptionsPerClient', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxSubscriptionsPerClient: 3 } } })
  const alice = await connect(t, broker.mqttUrl, { clientId: 'alice', password: sign({ sub: 'alice' }) })
  await alice.subscribeAsync('users/alice/a', { qos: 1 })
  await alice.unsubscribeAsync('users/alice/a')
  // holds nothing: b, c and d fit, e does not
  const granted: Array<number | undefined> = []
  // mqtt.js rejects a SUBACK 0x80
  for (const filter of ['b', 'c', 'd', 'e']) granted.push(await alice.subscribeAsync(`users/alice/${filter}`, { qos: 1 }).then((g) => g[0]?.qos, () => 128))
  t.same(granted, [1, 1, 1, 128])
})
