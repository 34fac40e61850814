import t, { type Test } from 'tap'
import { brokerEvent, connackCode, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { connectInbox, text, type Received } from '../helpers/mqtt-inbox.js'

// Installations and their subscriptions over HTTP, checked with real MQTT
// connections. A message that must NOT arrive is proven absent with a later
// marker: the HTTP API answers only once aedes has written a message to every
// live subscriber, and one connection delivers in order.

const admin = sign({ sub: 'root', role: 'admin' })
const service = sign({ sub: 'backend', role: 'service' })
const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })

async function createInstallation (t: Test, broker: TestBroker, token: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await api<{ installationId: string }>(broker, 'POST', '/v1/installations', { token, body })
  t.equal(res.status, 201, 'installation created')
  return res.body.installationId
}

/** `POST /v1/push`; checks the 202 and returns the message id. */
async function push (t: Test, broker: TestBroker, body: Record<string, unknown>): Promise<string> {
  const res = await api<{ id: string }>(broker, 'POST', '/v1/push', { token: service, body })
  t.equal(res.status, 202, `push to ${JSON.stringify(body.to)} accepted`)
  return res.body.id
}

/** A QoS1 raw publish, used as a payload or as an ordering marker. */
async function publish (t: Test, broker: TestBroker, topic: string, payload: string, token = service): Promise<void> {
  const res = await api(broker, 'POST', '/v1/publish', { token, body: { topic, payload, qos: 1 } })
  t.equal(res.status, 202, `${payload} published to ${topic}`)
}

async function subscriptionsOf (broker: TestBroker, token: string, id: string): Promise<Array<{ topic: string, qos: number }>> {
  const res = await api<{ subscriptions: Array<{ topic: string, qos: number }> }>(broker, 'GET', `/v1/installations/${id}/subscriptions`, { token })
  if (res.status !== 200) throw new Error(`GET subscriptions: ${res.status} ${res.text}`)
  return [...res.body.subscriptions].sort((a, b) => a.topic.localeCompare(b.topic))
}

const idOf = (message: Received): unknown => (JSON.parse(text(message)) as { id?: unknown }).id

t.test('a push-only installation has subscriptions but queues nothing', async (t) => {
  const broker = await startBroker(t)
  const id = await createInstallation(t, broker, alice, { mqtt: false })
  t.same(await subscriptionsOf(broker, alice, id), [{ topic: 'users/alice/inbox', qos: 1 }], 'subscribed to its inbox without ever connecting')

  t.equal((await api(broker, 'PUT', '/v1/topics/news', { token: admin, body: {} })).status, 201)
  const added = await api(broker, 'PUT', `/v1/installations/${id}/subscriptions/app%2Fnews`, { token: alice })
  t.equal(added.status, 200)
  t.same(added.body, { topic: 'app/news', qos: 1 })
  t.same(await subscriptionsOf(broker, alice, id), [{ topic: 'app/news', qos: 1 }, { topic: 'users/alice/inbox', qos: 1 }])

  await push(t, broker, { to: { topic: 'app/news' }, data: { n: '1' } })
  await push(t, broker, { to: { user: 'alice' }, data: { n: '2' } })
  await push(t, broker, { to: { installation: id }, data: { n: '3' } })

  // the device starts using MQTT: what was pushed while it was push-only was never queued
  const patched = await api(broker, 'PATCH', `/v1/installations/${id}`, { token: alice, body: { mqtt: true } })
  t.equal(patched.status, 200)
  t.equal(patched.body.mqtt, true)
  const device = await connectInbox(t, broker.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: broker })
  t.equal(device.connack.sessionPresent, true, 'its session holds the subscriptions')
  await publish(t, broker, 'users/alice/inbox', 'marker')
  const first = await device.next()
  t.equal(text(first), 'marker', 'the marker is the first message: nothing had been queued')

  // and the subscriptions made over HTTP are live now
  const newsId = await push(t, broker, { to: { topic: 'app/news' }, data: { n: '4' } })
  const news = await device.next()
  t.equal(news.topic, 'app/news')
  t.equal(idOf(news), newsId)
})

t.test('an HTTP subscription of a connected installation applies to its live connection', async (t) => {
  const broker = await startBroker(t)
  const id = await createInstallation(t, broker, alice)
  const device = await connectInbox(t, broker.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: broker })

  const added = await api(broker, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  t.equal(added.status, 200)
  t.same(added.body, { topic: 'users/alice/news', qos: 1 })
  await publish(t, broker, 'users/alice/news', 'hello', alice)
  const got = await device.next()
  t.equal(got.topic, 'users/alice/news')
  t.equal(text(got), 'hello')
  t.same(await subscriptionsOf(broker, alice, id), [{ topic: 'users/alice/inbox', qos: 1 }, { topic: 'users/alice/news', qos: 1 }])

  const denied = await api(broker, 'PUT', `/v1/installations/${id}/subscriptions/users%2Fbob%2Fnews`, { token: alice })
  t.equal(denied.status, 403)
  t.equal(denied.body.error.code, 'SUBSCRIBE_DENIED')
  const stranger = await api(broker, 'PUT', `/v1/installations/${id}/subscriptions/users%2Fbob%2Fnews`, { token: bob })
  t.equal(stranger.status, 404, 'another user cannot see the installation')

  const removed = await api(broker, 'DELETE', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  t.equal(removed.status, 204)
  await publish(t, broker, 'users/alice/news', 'not for you', alice)
  await publish(t, broker, 'users/alice/inbox', 'marker')
  t.equal(text(await device.next()), 'marker', 'the unsubscription applied to the live connection too')
  t.same(await subscriptionsOf(broker, alice, id), [{ topic: 'users/alice/inbox', qos: 1 }])
})

t.test('PUT /v1/users/me/subscriptions subscribes every installation of the caller', async (t) => {
  const broker = await startBroker(t)
  const aliceG1 = sign({ sub: 'alice', groups: ['g1'] })
  const phone = await createInstallation(t, broker, aliceG1)
  const tablet = await createInstallation(t, broker, aliceG1)
  const bobs = await createInstallation(t, broker, bob)
  const live = await connectInbox(t, broker.mqttUrl, { clientId: phone, clean: false, password: aliceG1 }, { readyOn: broker })

  const outsider = await api(broker, 'PUT', '/v1/users/me/subscriptions/groups%2Fg1%2F%23', { token: alice })
  t.equal(outsider.status, 403, 'without g1 in the token')
  t.equal(outsider.body.error.code, 'SUBSCRIBE_DENIED')

  const res = await api(broker, 'PUT', '/v1/users/me/subscriptions/groups%2Fg1%2F%23', { token: aliceG1 })
  t.equal(res.status, 200)
  t.equal(res.body.topic, 'groups/g1/#')
  t.same([...res.body.installations].sort(), [phone, tablet].sort())
  for (const id of [phone, tablet]) {
    t.same(await subscriptionsOf(broker, aliceG1, id), [{ topic: 'groups/g1/#', qos: 1 }, { topic: 'users/alice/inbox', qos: 1 }])
  }
  t.same(await subscriptionsOf(broker, bob, bobs), [{ topic: 'users/bob/inbox', qos: 1 }], 'other users\' installations are untouched')

  // a group member publishes: the connected installation gets it now, the offline one from its queue
  await publish(t, broker, 'groups/g1/chat', 'hi g1', sign({ sub: 'gary', groups: ['g1'] }))
  const now = await live.next()
  t.equal(now.topic, 'groups/g1/chat')
  t.equal(text(now), 'hi g1')
  const later = await connectInbox(t, broker.mqttUrl, { clientId: tablet, clean: false, password: aliceG1 }, { readyOn: broker })
  t.equal(later.connack.sessionPresent, true)
  const queued = await later.next()
  t.equal(queued.topic, 'groups/g1/chat')
  t.equal(text(queued), 'hi g1')
})

t.test('deleting an installation closes its connection and removes its session', async (t) => {
  const broker = await startBroker(t)
  const phone = await createInstallation(t, broker, alice)
  const tablet = await createInstallation(t, broker, alice)
  const keeper = await createInstallation(t, broker, alice)
  const phoneConn = await connectInbox(t, broker.mqttUrl, { clientId: phone, clean: false, password: alice }, { readyOn: broker })
  await phoneConn.client.subscribeAsync('users/alice/news', { qos: 1 })
  // the tablet is offline with a message in its queue
  const queuedId = await push(t, broker, { to: { user: 'alice' }, data: { n: '1' } })
  t.equal(idOf(await phoneConn.next()), queuedId)

  const closed = new Promise<void>((resolve) => phoneConn.client.once('close', () => resolve()))
  const deleted = await api(broker, 'DELETE', `/v1/installations/${phone}`, { token: alice })
  t.equal(deleted.status, 204)
  await closed
  t.pass('the live connection was closed')
  t.equal((await api(broker, 'DELETE', `/v1/installations/${tablet}`, { token: alice })).status, 204)

  for (const id of [phone, tablet]) {
    t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).status, 404)
    t.equal((await api(broker, 'GET', `/v1/installations/${id}/subscriptions`, { token: alice })).status, 404)
    t.equal((await api(broker, 'DELETE', `/v1/installations/${id}`, { token: alice })).status, 404, 'deleting twice is 404')
  }
  const list = await api(broker, 'GET', '/v1/installations', { token: alice })
  t.same(list.body.installations.map((i: { id: string }) => i.id), [keeper])

  // a push now reaches nobody through the deleted installations' old inbox subscriptions
  await push(t, broker, { to: { user: 'alice' }, data: { n: '2' } })
  for (const id of [phone, tablet]) {
    const again = await connectInbox(t, broker.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: broker })
    t.equal(again.connack.sessionPresent, false, `${id === phone ? 'phone' : 'tablet'}: no session left`)
    await again.client.subscribeAsync('users/alice/m', { qos: 1 })
    await publish(t, broker, 'users/alice/m', `marker ${id}`)
    t.equal(text(await again.next()), `marker ${id}`, 'no queued message and no old subscription survived')
  }
})

t.test('an installation\'s client id belongs to its owner before the device ever connects', async (t) => {
  const broker = await startBroker(t)
  const id = await createInstallation(t, broker, alice)
  t.equal(await connackCode(broker.mqttUrl, { clientId: id, clean: false, password: bob }), 5, 'bob, clean=false')
  t.equal(await connackCode(broker.mqttUrl, { clientId: id, clean: true, password: bob }), 5, 'bob, clean=true')
  t.equal(await connackCode(broker.mqttUrl, { clientId: id, clean: false, password: service }), 5, 'a service is another user too')
  t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: bob })).status, 404, 'bob cannot see it over HTTP')

  // the refused attempts left alice's session alone
  const device = await connectInbox(t, broker.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: broker })
  t.equal(device.connack.sessionPresent, true)
  const pushed = await push(t, broker, { to: { user: 'alice' }, data: { n: '1' } })
  t.equal(idOf(await device.next()), pushed)

  const gone = brokerEvent(broker, 'clientDisconnect', id)
  await device.client.endAsync()
  await gone
  t.equal(await connackCode(broker.mqttUrl, { clientId: id, clean: true, password: bob }), 5, 'still alice\'s while the device is offline')
})
