/**
 * Bucket change events end to end: real HTTP writes, real MQTT subscribers,
 * persistent sessions, and the FCM relay through Herald's real firebase-admin
 * against the local FCM fake.
 */
import type { MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import type { BucketEvent } from '../../src/buckets/index.js'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { fcmDeviceToken, startProviderFakes } from '../helpers/providers.js'

const alice = sign({ sub: 'alice', groups: ['ops'] })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })

interface Inbox {
  readonly events: Array<BucketEvent & { topic: string }>
  /** Resolves once `count` events arrived in all (earlier ones included). */
  waitFor (count: number): Promise<Array<BucketEvent & { topic: string }>>
}

/** Collects the JSON events a client receives; attach before CONNACK to see a restored queue. */
function inbox (): Inbox & { onMessage: (topic: string, payload: Buffer) => void } {
  const events: Array<BucketEvent & { topic: string }> = []
  const waiters: Array<{ count: number, resolve: () => void }> = []
  return {
    events,
    onMessage (topic, payload) {
      events.push({ ...(JSON.parse(payload.toString('utf8')) as BucketEvent), topic })
      for (const waiter of waiters.filter((w) => events.length >= w.count)) waiter.resolve()
    },
    async waitFor (count) {
      if (events.length < count) await new Promise<void>((resolve) => waiters.push({ count, resolve }))
      return events.slice(0, count)
    },
  }
}

async function ok (t: Test, broker: TestBroker, method: string, path: string, token: string, body?: unknown, headers?: Record<string, string>): Promise<any> {
  const response = await api(broker, method, path, { token, ...(body !== undefined && { body }), ...(headers !== undefined && { headers }) })
  t.ok(response.status >= 200 && response.status < 300, `${method} ${path}: ${response.status}`)
  return response.body
}

/** The SUBACK return codes for one SUBSCRIBE (128 = refused); mqtt.js rejects subscribeAsync on a refusal. */
async function suback (client: MqttClient, filters: string[]): Promise<number[]> {
  return await new Promise((resolve, reject) => {
    client.subscribe(filters, { qos: 1 }, (err, _granted, packet) => {
      if (packet === undefined) reject(err ?? new Error('no SUBACK'))
      else resolve(packet.granted.map(Number))
    })
  })
}

/** Closes a persistent session's connection and resolves once the broker saw it go. */
async function leave (broker: TestBroker, client: MqttClient, clientId: string): Promise<void> {
  const aedes = broker.server.broker?.aedes
  if (aedes === undefined) throw new Error('broker not started')
  const gone = new Promise<void>((resolve) => {
    const onDisconnect = (c: { id: string }): void => {
      if (c.id !== clientId) return
      aedes.off('clientDisconnect', onDisconnect)
      resolve()
    }
    aedes.on('clientDisconnect', onDisconnect)
  })
  await client.endAsync()
  await gone
}

t.test('events reach a subscriber in order per object, with the body when small', async (t) => {
  const broker = await startBroker(t, { overrides: { buckets: { eventBodyLimitBytes: 100 } } })
  const box = inbox()
  const device = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice }, box.onMessage)
  t.same((await device.subscribeAsync('users/alice/buckets/notes/events', { qos: 1 })).map((g) => g.qos), [1])

  const base = '/v1/users/alice/buckets/notes/objects'
  // four objects written at the same time, each through create, replace, patch, delete
  const lifecycle = async (id: string): Promise<void> => {
    await ok(t, broker, 'PUT', `${base}/${id}`, alice, { id, step: 1 }, { 'if-none-match': '*' })
    await ok(t, broker, 'PUT', `${base}/${id}`, service, { id, step: 2 }, { 'if-match': '1' })
    await ok(t, broker, 'PATCH', `${base}/${id}`, alice, { step: 3, text: 'x'.repeat(200) }, { 'if-match': '2' })
    await ok(t, broker, 'DELETE', `${base}/${id}`, alice, undefined, { 'if-match': '3' })
  }
  const ids = ['a', 'b', 'c', 'd']
  await Promise.all(ids.map(lifecycle))
  const events = await box.waitFor(16)

  for (const id of ids) {
    const mine = events.filter((e) => e.objectId === id)
    t.same(mine.map((e) => [e.type, e.version]), [
      ['DATA_OBJECT_CREATED', 1], ['DATA_OBJECT_UPDATED', 2], ['DATA_OBJECT_UPDATED', 3], ['DATA_OBJECT_DELETED', 4],
    ], `${id}: every change, in order`)
    t.same(mine.map((e) => e.sender), ['alice', 'backend', 'alice', 'alice'])
    t.strictSame(mine[0]?.body, { id, step: 1 }, 'a small body rides along')
    t.equal(mine[2]?.bodyOmitted, true, 'a large one does not')
    t.notOk(mine[2] !== undefined && 'body' in mine[2])
  }
  const first = events[0]
  t.same(Object.keys(first ?? {}).sort(), ['body', 'bucket', 'eventId', 'modifiedAt', 'objectId', 'scope', 'sender', 'topic', 'type', 'version'])
  t.match(first, { topic: 'users/alice/buckets/notes/events', scope: 'users/alice', bucket: 'notes' })

  await ok(t, broker, 'DELETE', '/v1/users/alice/buckets/notes', alice)
  const dropped = (await box.waitFor(17))[16]
  t.match(dropped, { type: 'BUCKET_DELETED', scope: 'users/alice', bucket: 'notes', objectId: null, version: null, sender: 'alice' })
})

t.test('an offline device gets the events it missed when it reconnects', async (t) => {
  const broker = await startBroker(t)
  const clientId = 'dave-tablet'
  const dave = sign({ sub: 'dave', groups: ['ops'] })
  const before = await connect(t, broker.mqttUrl, { clientId, clean: false, password: dave })
  t.same((await before.subscribeAsync('groups/ops/buckets/tasks/events', { qos: 1 })).map((g) => g.qos), [1])
  await leave(broker, before, clientId)

  const base = '/v1/groups/ops/buckets/tasks/objects'
  const created = await ok(t, broker, 'POST', base, alice, { task: 'write tests' })
  await ok(t, broker, 'PATCH', `${base}/${created.id as string}`, alice, { done: true })
  await ok(t, broker, 'POST', `${base}?id=second`, service, { task: 'ship' })
  await ok(t, broker, 'DELETE', `${base}/${created.id as string}`, alice)

  const box = inbox()
  await connect(t, broker.mqttUrl, { clientId, clean: false, password: dave }, box.onMessage)
  const events = await box.waitFor(4)
  t.same(events.map((e) => [e.type, e.objectId, e.version]), [
    ['DATA_OBJECT_CREATED', created.id, 1],
    ['DATA_OBJECT_UPDATED', created.id, 2],
    ['DATA_OBJECT_CREATED', 'second', 1],
    ['DATA_OBJECT_DELETED', created.id, 3],
  ])
  t.strictSame(events[1]?.body, { task: 'write tests', done: true })
})

t.test('app buckets: subscribing follows the bucket ACL; a deleted bucket’s last event still arrives', async (t) => {
  const broker = await startBroker(t)
  await ok(t, broker, 'PUT', '/v1/app/buckets/news', admin, { acl: { read: ['group:ops'] } })

  const box = inbox()
  const reader = await connect(t, broker.mqttUrl, { clientId: 'alice-news', clean: false, password: alice }, box.onMessage)
  t.same(await suback(reader, ['app/buckets/news/events']), [1], 'group:ops may read')
  const outsider = await connect(t, broker.mqttUrl, { clientId: 'bob-news', password: bob })
  t.same(await suback(outsider, ['app/buckets/news/events', 'app/buckets/missing/events', 'groups/ops/buckets/tasks/events', 'app/buckets/+/events']), [128, 128, 128, 128],
    'not in the ACL; no such bucket; not a member; a wildcard across buckets')

  await ok(t, broker, 'POST', '/v1/app/buckets/news/objects?id=n1', service, { headline: 'Herald ships buckets' })
  t.match((await box.waitFor(1))[0], { topic: 'app/buckets/news/events', scope: 'app', bucket: 'news', type: 'DATA_OBJECT_CREATED', objectId: 'n1', body: { headline: 'Herald ships buckets' } })

  // offline when the bucket is deleted: the queued BUCKET_DELETED is still delivered
  await leave(broker, reader, 'alice-news')
  await ok(t, broker, 'DELETE', '/v1/app/buckets/news', admin)
  const later = inbox()
  await connect(t, broker.mqttUrl, { clientId: 'alice-news', clean: false, password: alice }, later.onMessage)
  t.match((await later.waitFor(1))[0], { type: 'BUCKET_DELETED', scope: 'app', bucket: 'news', objectId: null })
})

t.test('a client publishing on an events topic is disconnected; nothing reaches subscribers', async (t) => {
  const broker = await startBroker(t)
  const box = inbox()
  const watcher = await connect(t, broker.mqttUrl, { clientId: 'watcher', password: alice }, box.onMessage)
  await watcher.subscribeAsync('users/alice/buckets/notes/events', { qos: 1 })

  const forger = await connect(t, broker.mqttUrl, { clientId: 'forger', password: alice })
  const closed = new Promise<void>((resolve) => forger.once('close', () => resolve()))
  forger.publish('users/alice/buckets/notes/events', JSON.stringify({ type: 'DATA_OBJECT_DELETED', objectId: 'x' }), { qos: 1 })
  await closed

  // the marker: a real event, published after the forged one was refused
  await ok(t, broker, 'POST', '/v1/users/alice/buckets/notes/objects?id=real', alice, {})
  const [first] = await box.waitFor(1)
  t.match(first, { type: 'DATA_OBJECT_CREATED', objectId: 'real' }, 'the first event is the real one')
})

t.test('with the relay: an offline installation subscribed to a bucket gets its events through FCM', async (t) => {
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: fakes.push } })
  const token = fcmDeviceToken()
  const registered = await ok(t, broker, 'POST', '/v1/installations', alice, { pushToken: { provider: 'fcm', token } })
  const id = registered.installationId as string
  // subscribing to a bucket = subscribing the installation to its events topic
  const subscribed = await api(broker, 'PUT', `/v1/installations/${id}/subscriptions/users/alice/buckets/notes/events`, { token: alice })
  t.equal(subscribed.status, 200)
  const bobs = await api(broker, 'PUT', `/v1/installations/${id}/subscriptions/users/bob/buckets/notes/events`, { token: alice })
  t.equal(bobs.status, 403, 'not to another user’s bucket')

  // the device has never connected: its session is offline, so the event is relayed and queued
  const created = await ok(t, broker, 'PUT', '/v1/users/alice/buckets/notes/objects/n1', service, { text: 'hello' })
  const [sent] = await fakes.fcm.waitForMessages(1)
  await broker.server.relay?.drain()
  t.equal(fakes.fcm.messages.length, 1, 'one relay')
  t.equal(sent?.token, token)
  const data = sent?.message.data as Record<string, string>
  t.equal(data.topic, 'users/alice/buckets/notes/events')
  const relayed = JSON.parse(data.payload ?? '{}') as BucketEvent
  t.match(relayed, { type: 'DATA_OBJECT_CREATED', scope: 'users/alice', bucket: 'notes', objectId: 'n1', version: created.version, body: { text: 'hello' } })

  // and the MQTT session holds the same event for when the device connects
  const box = inbox()
  await connect(t, broker.mqttUrl, { clientId: id, clean: false, password: alice }, box.onMessage)
  const [queued] = await box.waitFor(1)
  t.equal(queued?.eventId, relayed.eventId, 'the same event both ways: the device drops the copy by eventId')
})
