import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { brokerEvent, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { mosquittoSubOne } from '../helpers/mosquitto-sub.js'
import { connectInbox, text, type Received } from '../helpers/mqtt-inbox.js'

// POST /v1/push and POST /v1/publish end to end: real HTTP requests, real MQTT
// clients (mqtt.js over TCP and WebSocket, Debian's mosquitto_sub).
//
// A message that must NOT arrive is proven absent with a later marker: the HTTP
// API answers only once aedes has written a message to every live subscriber,
// and one connection delivers in order, so had the message been delivered it
// would come before the marker.

const admin = sign({ sub: 'root', role: 'admin' })
const service = sign({ sub: 'backend', role: 'service' })
const alice = sign({ sub: 'alice' })

/** `POST /v1/push`; checks the 202 and returns the message id. */
async function push (t: Test, broker: TestBroker, token: string, body: Record<string, unknown>): Promise<string> {
  const res = await api<{ id: string }>(broker, 'POST', '/v1/push', { token, body })
  t.equal(res.status, 202, `push to ${JSON.stringify(body.to)} accepted`)
  t.type(res.body?.id, 'string')
  return res.body.id
}

/** A QoS1 raw publish by a service, used as an ordering marker. */
async function marker (t: Test, broker: TestBroker, topic: string, text: string): Promise<void> {
  const res = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic, payload: text, qos: 1 } })
  t.equal(res.status, 202, `marker ${text} published`)
}

async function createTopic (t: Test, broker: TestBroker, name: string, acl?: Record<string, string[]>): Promise<void> {
  const res = await api(broker, 'PUT', `/v1/topics/${name}`, { token: admin, body: acl === undefined ? {} : { acl } })
  t.ok(res.status === 201 || res.status === 200, `topic ${name} written`)
}

async function createInstallation (t: Test, broker: TestBroker, token: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await api<{ installationId: string }>(broker, 'POST', '/v1/installations', { token, body })
  t.equal(res.status, 201, 'installation created')
  return res.body.installationId
}

function envelopeOf (message: Received): Record<string, unknown> {
  return JSON.parse(message.payload.toString('utf8')) as Record<string, unknown>
}

t.test('a topic push reaches mqtt.js over TCP and WebSocket and mosquitto_sub with the same envelope', async (t) => {
  const broker = await startBroker(t)
  await createTopic(t, broker, 'news')

  const tcp = await connectInbox(t, broker.mqttUrl, { clientId: 'alice-tcp', password: alice }, { readyOn: broker })
  const ws = await connectInbox(t, broker.wsUrl, { clientId: 'bob-ws', password: sign({ sub: 'bob' }) }, { readyOn: broker })
  t.same((await tcp.client.subscribeAsync('app/news', { qos: 1 })).map((g) => g.qos), [1])
  t.same((await ws.client.subscribeAsync('app/news', { qos: 1 })).map((g) => g.qos), [1])

  const carol = await mosquittoSubOne(t, broker, { clientId: 'mosq-carol', token: sign({ sub: 'carol' }), topic: 'app/news', qos: 1 })

  const request = {
    to: { topic: 'app/news' },
    notification: { title: 'Hello', body: 'Héllo wörld ✓' },
    data: { article: '42', kind: 'breaking' },
    ttl: 60,
  }
  const id = await push(t, broker, service, request)

  const fromTcp = envelopeOf(await tcp.next())
  const fromWs = envelopeOf(await ws.next())
  const fromMosquitto = JSON.parse((await carol.message).trim()) as Record<string, unknown>

  t.same(Object.keys(fromTcp).sort(), ['data', 'expiresAt', 'id', 'notification', 'origin', 'sender', 'sentAt', 'topic'])
  t.equal(fromTcp.id, id, 'the envelope id is the id the API returned')
  t.equal(fromTcp.sender, 'backend')
  t.equal(fromTcp.topic, 'app/news')
  t.same(fromTcp.origin, { topic: 'app/news' })
  t.same(fromTcp.notification, request.notification)
  t.same(fromTcp.data, request.data)
  const sentAt = Date.parse(String(fromTcp.sentAt))
  t.ok(Number.isFinite(sentAt) && new Date(sentAt).toISOString() === fromTcp.sentAt, 'sentAt is an ISO time')
  t.equal(Date.parse(String(fromTcp.expiresAt)) - sentAt, 60_000, 'expiresAt is sentAt + ttl')
  t.same(fromWs, fromTcp, 'the WebSocket subscriber got the same envelope')
  t.same(fromMosquitto, fromTcp, 'mosquitto_sub got the same envelope')
})

t.test('direct push to a user reaches every installation: live, and from the queue of an offline one', async (t) => {
  const broker = await startBroker(t)
  const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: {} })
  t.equal(created.status, 201)
  const phone = created.body.installationId as string
  t.equal(created.body.mqtt.clientId, phone)
  t.equal(created.body.mqtt.inboxTopic, 'users/alice/inbox')
  t.equal(created.body.mqtt.ports.mqtt, broker.ports.mqtt)
  t.equal(created.body.mqtt.ports.ws, broker.ports.http)
  const tablet = await createInstallation(t, broker, alice)

  // the phone connects with the connection info it was given and subscribes to nothing itself
  const info = created.body.mqtt as { host: string, ports: { mqtt: number } }
  const live = await connectInbox(t, `mqtt://${info.host}:${info.ports.mqtt}`, { clientId: phone, clean: false, password: alice }, { readyOn: broker })
  t.equal(live.connack.sessionPresent, true, 'the inbox subscription made at creation is in the session')

  const device = sign({ sub: 'alice' })
  const refused = await api(broker, 'POST', '/v1/push', { token: device, body: { to: { user: 'alice' }, data: { a: '1' } } })
  t.equal(refused.status, 403, 'a device may not direct-push')
  t.equal(refused.body.error.code, 'NOT_AUTHORIZED')

  const id = await push(t, broker, service, { to: { user: 'alice' }, data: { order: '7' } })
  const got = await live.next()
  t.equal(got.topic, 'users/alice/inbox')
  const envelope = envelopeOf(got)
  t.equal(envelope.id, id)
  t.same(envelope.origin, { user: 'alice' })
  t.equal(envelope.topic, 'users/alice/inbox')
  t.equal(envelope.notification, null, 'no notification given')
  t.same(envelope.data, { order: '7' })
  t.notOk('expiresAt' in envelope, 'no expiresAt without ttl')

  // the tablet was offline at push time; over WebSocket, to vary the transport
  const later = await connectInbox(t, broker.wsUrl, { clientId: tablet, clean: false, password: alice }, { readyOn: broker })
  t.equal(later.connack.sessionPresent, true)
  const queued = await later.next()
  t.equal(queued.topic, 'users/alice/inbox')
  t.same(envelopeOf(queued), envelope, 'the queued copy is the same envelope')

  // each got it once: the next thing on both connections is the marker
  await marker(t, broker, 'users/alice/inbox', 'after')
  t.equal(text(await live.next()), 'after')
  t.equal(text(await later.next()), 'after')
})

t.test('a direct push queued for an offline installation survives a broker restart', async (t) => {
  const first = await startBroker(t)
  const phone = await createInstallation(t, first, alice)
  const tablet = await createInstallation(t, first, alice)
  const live = await connectInbox(t, first.mqttUrl, { clientId: phone, clean: false, password: alice }, { readyOn: first })
  const acked = brokerEvent(first, 'ack', phone)
  const id = await push(t, first, service, { to: { user: 'alice' }, notification: { title: 'Restart' } })
  t.equal(envelopeOf(await live.next()).id, id, 'the connected installation got it')
  // a QoS1 message whose PUBACK the broker has not processed is rightly sent again
  await acked
  await first.stop()

  const second = await startBroker(t, { dataDir: first.dataDir })
  const back = await connectInbox(t, second.mqttUrl, { clientId: tablet, clean: false, password: alice }, { readyOn: second })
  t.equal(back.connack.sessionPresent, true, 'the never-connected installation has a session after the restart')
  const queued = await back.next()
  t.equal(queued.topic, 'users/alice/inbox')
  t.equal(envelopeOf(queued).id, id, 'the same envelope id')
  t.same(envelopeOf(queued).notification, { title: 'Restart' })

  // the phone's session was kept too, and it already had the message: nothing is queued for it
  const phoneBack = await connectInbox(t, second.mqttUrl, { clientId: phone, clean: false, password: alice }, { readyOn: second })
  t.equal(phoneBack.connack.sessionPresent, true)
  await marker(t, second, 'users/alice/inbox', 'after restart')
  t.equal(text(await phoneBack.next()), 'after restart', 'the acknowledged copy was not delivered again')
  t.equal(text(await back.next()), 'after restart')
})

t.test('a push to one installation reaches that device only, now or from its queue', async (t) => {
  const broker = await startBroker(t)
  const phone = await createInstallation(t, broker, alice)
  const tablet = await createInstallation(t, broker, alice)
  let phoneConn = await connectInbox(t, broker.mqttUrl, { clientId: phone, clean: false, password: alice }, { readyOn: broker })
  const tabletConn = await connectInbox(t, broker.mqttUrl, { clientId: tablet, clean: false, password: alice }, { readyOn: broker })
  t.same((await tabletConn.client.subscribeAsync('users/alice/#', { qos: 1 })).map((g) => g.qos), [1])

  const acked = brokerEvent(broker, 'ack', phone)
  const id = await push(t, broker, service, { to: { installation: phone }, data: { only: 'phone' } })
  const got = await phoneConn.next()
  t.equal(got.topic, `users/alice/installations/${phone}`)
  const envelope = envelopeOf(got)
  t.equal(envelope.id, id)
  t.equal(envelope.topic, `users/alice/installations/${phone}`)
  t.same(envelope.origin, { installation: phone })
  await marker(t, broker, 'users/alice/marker', 'm1')
  t.equal(text(await tabletConn.next()), 'm1', 'the tablet, subscribed to users/alice/#, did not get it')

  // the owner may push to her own device too; it is queued while the device is offline
  await acked
  const gone = brokerEvent(broker, 'clientDisconnect', phone)
  await phoneConn.client.endAsync()
  await gone
  const id2 = await push(t, broker, alice, { to: { installation: phone }, data: { only: 'phone, later' } })
  await marker(t, broker, 'users/alice/marker', 'm2')
  t.equal(text(await tabletConn.next()), 'm2', 'the tablet did not get the queued one either')
  phoneConn = await connectInbox(t, broker.mqttUrl, { clientId: phone, clean: false, password: alice }, { readyOn: broker })
  const queued = await phoneConn.next()
  t.equal(queued.topic, `users/alice/installations/${phone}`)
  t.equal(envelopeOf(queued).id, id2)
  t.same(envelopeOf(queued).data, { only: 'phone, later' })

  const other = await api(broker, 'POST', '/v1/push', { token: sign({ sub: 'bob' }), body: { to: { installation: phone }, data: { a: 'b' } } })
  t.equal(other.status, 404, 'another user cannot push to alice\'s installation, nor learn it exists')
  t.equal(other.body.error.code, 'NOT_FOUND')
})

t.test('mqtt.enabled false sends nothing over MQTT', async (t) => {
  const broker = await startBroker(t)
  const phone = await createInstallation(t, broker, alice)
  const conn = await connectInbox(t, broker.mqttUrl, { clientId: phone, clean: false, password: alice }, { readyOn: broker })
  await conn.client.subscribeAsync('users/alice/news', { qos: 1 })

  await push(t, broker, service, { to: { topic: 'users/alice/news' }, data: { a: '1' }, mqtt: { enabled: false } })
  await push(t, broker, service, { to: { user: 'alice' }, data: { a: '2' }, mqtt: { enabled: false } })
  await push(t, broker, service, { to: { installation: phone }, data: { a: '3' }, mqtt: { enabled: false } })
  await marker(t, broker, 'users/alice/news', 'marker')
  t.equal(text(await conn.next()), 'marker', 'none of the three pushes was delivered')
})

t.test('an app topic ACL applies to live subscriptions; a deleted topic refuses pushes', async (t) => {
  const broker = await startBroker(t)
  await createTopic(t, broker, 'alerts', { subscribe: ['group:ops'] })
  const olga = await connectInbox(t, broker.mqttUrl, { clientId: 'olga-1', password: sign({ sub: 'olga', groups: ['ops'] }) }, { readyOn: broker })
  t.same((await olga.client.subscribeAsync(['app/alerts', 'users/olga/x'], { qos: 1 })).map((g) => g.qos), [1, 1])

  const id = await push(t, broker, service, { to: { topic: 'app/alerts' }, notification: { title: 'disk full' } })
  const got = await olga.next()
  t.equal(got.topic, 'app/alerts')
  t.equal(envelopeOf(got).id, id, 'a member receives pushes to the topic')

  await createTopic(t, broker, 'alerts', { subscribe: ['group:other'] })
  await push(t, broker, service, { to: { topic: 'app/alerts' }, notification: { title: 'cpu hot' } })
  await marker(t, broker, 'users/olga/x', 'after acl change')
  t.equal(text(await olga.next()), 'after acl change', 'the live subscription no longer receives the topic')

  const deleted = await api(broker, 'DELETE', '/v1/topics/alerts', { token: admin })
  t.equal(deleted.status, 204)
  await assertPushAndPublishRefused(t, broker, 'app/alerts')
  await marker(t, broker, 'users/olga/x', 'after delete')
  t.equal(text(await olga.next()), 'after delete', 'nothing was delivered for the deleted topic')
})

/** Both ways of sending to `topic` answer 403 PUBLISH_DENIED. */
async function assertPushAndPublishRefused (t: Test, broker: TestBroker, topic: string): Promise<void> {
  const pushed = await api(broker, 'POST', '/v1/push', { token: service, body: { to: { topic }, data: { a: '1' } } })
  t.equal(pushed.status, 403)
  t.equal(pushed.body.error.code, 'PUBLISH_DENIED')
  const published = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic, payload: 'x', qos: 1 } })
  t.equal(published.status, 403)
  t.equal(published.body.error.code, 'PUBLISH_DENIED')
}

t.test('publishing to an app topic that does not exist is refused and delivers nothing', async (t) => {
  const broker = await startBroker(t)
  await createTopic(t, broker, 'real')
  // a token grant lets this watcher read every app/ topic, created or not
  const watcher = await connectInbox(t, broker.mqttUrl, { clientId: 'watcher', password: sign({ sub: 'watcher', acl: { sub: ['app/#'] } }) }, { readyOn: broker })
  t.same((await watcher.client.subscribeAsync(['app/#', 'users/watcher/x'], { qos: 1 })).map((g) => g.qos), [1, 1])

  const id = await push(t, broker, service, { to: { topic: 'app/real' }, data: { a: '1' } })
  t.equal(envelopeOf(await watcher.next()).id, id, 'the watcher does see pushes to existing app topics')

  await assertPushAndPublishRefused(t, broker, 'app/ghost')
  await marker(t, broker, 'users/watcher/x', 'marker')
  t.equal(text(await watcher.next()), 'marker', 'nothing reached app/ghost')
})

t.test('POST /v1/publish round-trips exact bytes (base64, json) and retains', async (t) => {
  const broker = await startBroker(t)
  const conn = await connectInbox(t, broker.mqttUrl, { clientId: 'alice-1', password: alice }, { readyOn: broker })
  await conn.client.subscribeAsync('users/alice/#', { qos: 1 })

  const bytes = Buffer.concat([Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x0d]), randomBytes(251)])
  const b64 = await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/bin', payload: bytes.toString('base64'), encoding: 'base64', qos: 1 } })
  t.equal(b64.status, 202)
  t.same(b64.body, { topic: 'users/alice/bin', bytes: bytes.length, qos: 1 })
  const gotBytes = await conn.next()
  t.equal(gotBytes.topic, 'users/alice/bin')
  t.ok(gotBytes.payload.equals(bytes), 'the exact bytes arrived')

  const value = { n: 1.5, s: 'héllo ✓ "quoted"', a: [true, null, 0], o: {} }
  const json = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/json', payload: value, encoding: 'json', qos: 1 } })
  t.equal(json.status, 202)
  const gotJson = await conn.next()
  t.equal(gotJson.topic, 'users/alice/json')
  t.ok(gotJson.payload.equals(Buffer.from(JSON.stringify(value), 'utf8')), 'the JSON text of the value, byte for byte')
  t.same(JSON.parse(gotJson.payload.toString('utf8')), value)

  const retained = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/status', payload: 'online', qos: 1, retain: true } })
  t.equal(retained.status, 202)
  const live = await conn.next()
  t.equal(text(live), 'online')
  t.equal(live.retain, false, '[MQTT-3.3.1-9] an existing subscriber gets it without the retain flag')

  const late = await connectInbox(t, broker.wsUrl, { clientId: 'alice-2', password: alice }, { readyOn: broker })
  await late.client.subscribeAsync('users/alice/status', { qos: 1 })
  const fromStore = await late.next()
  t.equal(fromStore.topic, 'users/alice/status')
  t.equal(text(fromStore), 'online')
  t.equal(fromStore.retain, true, '[MQTT-3.3.1-8] a later subscriber gets the retained message with the flag')
})
