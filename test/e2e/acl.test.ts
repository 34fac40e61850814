import type { MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import { SessionStore } from '../../src/store/session-store.js'
import { openDatabase } from '../../src/store/open-store.js'
import { connect, nextMessage, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { connectInbox, type Inbox } from '../helpers/mqtt-inbox.js'

const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })

const closeOf = async (client: MqttClient): Promise<void> => await new Promise((resolve) => client.once('close', () => resolve()))

/**
 * Publishes at QoS1: 'closed' when the broker drops the connection (a denied
 * publish), 'acknowledged' when it sends PUBACK (an allowed one). No timeout.
 */
async function publishOutcome (client: MqttClient, topic: string): Promise<'closed' | 'acknowledged'> {
  const closed = closeOf(client).then(() => 'closed' as const)
  const acknowledged = client.publishAsync(topic, 'denied?', { qos: 1 }).then(() => 'acknowledged' as const, async () => await closed)
  return await Promise.race([closed, acknowledged])
}

/** The SUBACK return codes for one SUBSCRIBE packet holding `filters` (128 = refused). */
async function suback (client: MqttClient, filters: string[]): Promise<number[]> {
  return await new Promise((resolve, reject) => {
    client.subscribe(filters, { qos: 1 }, (err, _granted, packet) => {
      if (packet === undefined) reject(err ?? new Error('no SUBACK'))
      else resolve(packet.granted.map(Number))
    })
  })
}

/** The topics of every message `inbox` received, in order. */
const topicsOf = (inbox: Inbox): string[] => inbox.messages.map((message) => message.topic)

t.test('one SUBSCRIBE with an allowed and a denied filter: SUBACK [granted, 128], nothing delivered on the denied one', async (t) => {
  const broker = await startBroker(t)
  const device = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  t.same(await suback(device, ['users/alice/#', 'users/bob/#']), [1, 128])
  t.ok(device.connected, 'a refused filter leaves the connection open')

  // bob receives on his own topic: the message below really is published
  const bobClient = await connect(t, broker.mqttUrl, { clientId: 'bob-phone', password: bob })
  t.same(await suback(bobClient, ['users/bob/#']), [1])
  const bobGot = nextMessage(bobClient, 'users/bob/secret')

  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  const first = nextMessage(device)
  await server.publishAsync('users/bob/secret', 'for bob', { qos: 1 })
  await server.publishAsync('users/alice/marker', 'for alice', { qos: 1 })
  t.equal((await first).topic, 'users/alice/marker', 'the first message alice gets is the one after bob\'s')
  t.equal((await bobGot).payload.toString(), 'for bob')
})

/**
 * A clean=false client subscribes to its own and someone else's topic in one
 * packet; only its own may come back with the session, and nothing on the
 * other one may be queued or delivered, before or after a broker restart.
 */
async function deniedFilterIsNotPersisted (t: Test, restart: boolean): Promise<void> {
  let broker: TestBroker = await startBroker(t)
  const session = { clientId: 'alice-phone', clean: false, password: alice }

  const first = await connect(t, broker.mqttUrl, session)
  t.same(await suback(first, ['users/alice/#', 'users/bob/#']), [1, 128])
  await first.endAsync()

  // published while alice is offline: only her own topic may be queued
  const offlineServer = await connect(t, broker.mqttUrl, { clientId: 'backend-1', password: service })
  await offlineServer.publishAsync('users/bob/offline', 'not for alice', { qos: 1 })
  await offlineServer.publishAsync('users/alice/offline', 'queued', { qos: 1 })

  if (restart) {
    await broker.stop()
    // what is on disk: the session holds the allowed filter only
    const db = await openDatabase(broker.dataDir)
    const onDisk = new SessionStore(db.sublevel('sessions', { valueEncoding: 'buffer' }))
    await onDisk.setup({ id: 'inspection' })
    const stored = await onDisk.subscriptionsByClient({ id: 'alice-phone' })
    await db.close()
    t.same(stored.map((sub) => sub.topic), ['users/alice/#'], 'the stored session has no denied filter')
    broker = await startBroker(t, { dataDir: broker.dataDir })
  }

  // back without subscribing again
  const back = await connectInbox(t, broker.mqttUrl, session)
  t.equal(back.connack.sessionPresent, true, 'sessionPresent')
  await back.waitFor(1)
  t.same(topicsOf(back), ['users/alice/offline'], 'only the allowed offline message was queued')

  const server = await connect(t, broker.mqttUrl, { clientId: 'backend-2', password: service })
  await server.publishAsync('users/bob/x', 'not for alice', { qos: 1 })
  await server.publishAsync('users/alice/x', 'for alice', { qos: 1 })
  await back.waitFor(2)
  t.equal(back.messages[1]?.topic, 'users/alice/x', 'the denied topic is not delivered to the restored session')
  t.same(topicsOf(back), ['users/alice/offline', 'users/alice/x'])
}

t.test('a denied filter is not stored in a clean=false session', async (t) => {
  await deniedFilterIsNotPersisted(t, false)
})

t.test('a denied filter is not stored in a clean=false session, across a broker restart', async (t) => {
  await deniedFilterIsNotPersisted(t, true)
})

t.test('a denied PUBLISH closes the connection and is not delivered', async (t) => {
  const broker = await startBroker(t)
  const bobInbox = await connectInbox(t, broker.mqttUrl, { clientId: 'bob-phone', password: bob })
  t.same(await suback(bobInbox.client, ['users/bob/#']), [1])

  for (const topic of ['users/bob/notes', 'users/bob/inbox', 'sensors/x', '$SYS/fake']) {
    const intruder = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
    t.equal(await publishOutcome(intruder, topic), 'closed', `publishing to ${topic} closed the connection`)
  }

  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  await server.publishAsync('users/bob/marker', 'm', { qos: 1 })
  await bobInbox.waitFor(1)
  t.same(topicsOf(bobInbox), ['users/bob/marker'], 'none of the denied publishes reached bob')
})

t.test('direct push: a service publishes to users/alice/inbox, alice receives, and alice may not write her own inbox', async (t) => {
  const broker = await startBroker(t)
  const phone = await connectInbox(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  t.same(await suback(phone.client, ['users/alice/inbox']), [1])

  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  await server.publishAsync('users/alice/inbox', 'hello alice', { qos: 1 })
  t.equal((await phone.next()).payload.toString(), 'hello alice')

  const laptop = await connect(t, broker.mqttUrl, { clientId: 'alice-laptop', password: alice })
  t.equal(await publishOutcome(laptop, 'users/alice/inbox'), 'closed', 'alice publishing to her own inbox closed the connection')

  await server.publishAsync('users/alice/inbox', 'marker', { qos: 1 })
  t.equal((await phone.next()).payload.toString(), 'marker')
  t.same(topicsOf(phone), ['users/alice/inbox', 'users/alice/inbox'], 'the forged message was not delivered')
})

t.test('group members exchange on groups/g1/x; a non-member may neither subscribe nor publish', async (t) => {
  const broker = await startBroker(t)
  const dave = await connectInbox(t, broker.mqttUrl, { clientId: 'dave', password: sign({ sub: 'dave', groups: ['g1'] }) })
  const erin = await connect(t, broker.mqttUrl, { clientId: 'erin', password: sign({ sub: 'erin', groups: ['g2', 'g1'] }) })
  t.same(await suback(dave.client, ['groups/g1/#']), [1])
  t.same(await suback(erin, ['groups/g1/x']), [1])

  // erin subscribed to the topic she publishes on: her own copy comes back too, in its own time
  const erinsOwn = nextMessage(erin, 'groups/g1/x')
  await erin.publishAsync('groups/g1/x', 'from erin', { qos: 1 })
  t.equal((await dave.next()).payload.toString(), 'from erin')
  t.equal((await erinsOwn).payload.toString(), 'from erin')
  const toErin = nextMessage(erin, 'groups/g1/x')
  await dave.client.publishAsync('groups/g1/x', 'from dave', { qos: 1 })
  t.equal((await toErin).payload.toString(), 'from dave')

  const outsider = await connect(t, broker.mqttUrl, { clientId: 'bob-phone', password: sign({ sub: 'bob', groups: ['g2'] }) })
  t.same(await suback(outsider, ['groups/g1/#', 'groups/+/x', 'groups/g2/x']), [128, 128, 1])
  t.equal(await publishOutcome(outsider, 'groups/g1/x'), 'closed', 'a non-member publishing to the group closed the connection')

  await erin.publishAsync('groups/g1/marker', 'm', { qos: 1 })
  await dave.waitFor(3)
  t.same(topicsOf(dave), ['groups/g1/x', 'groups/g1/x', 'groups/g1/marker'], 'the non-member\'s message was not delivered')
})

t.test('the admin reads every inbox and $SYS; devices may not', async (t) => {
  const broker = await startBroker(t)
  const root = await connect(t, broker.mqttUrl, { clientId: 'root', password: admin })
  t.same(await suback(root, ['users/+/inbox', '$SYS/#']), [1, 1])

  const device = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  t.same(await suback(device, ['$SYS/#', 'users/+/inbox', '#', 'users/alice/inbox']), [128, 128, 128, 1])

  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  const seen = nextMessage(root, 'users/alice/inbox')
  await server.publishAsync('users/alice/inbox', 'direct', { qos: 1 })
  t.equal((await seen).payload.toString(), 'direct')

  // aedes announces every new client on $SYS/<broker id>/new/clients
  const brokerId = broker.server.broker?.aedes.id
  if (brokerId === undefined) throw new Error('the broker is not running')
  const announced = new Promise<string>((resolve) => {
    root.on('message', (topic, payload) => {
      if (topic === `$SYS/${brokerId}/new/clients` && payload.toString() === 'probe') resolve(topic)
    })
  })
  await connect(t, broker.mqttUrl, { clientId: 'probe', password: bob })
  t.equal(await announced, `$SYS/${brokerId}/new/clients`)
})

t.test('a deny grant filters delivery on an allowed wildcard subscription', async (t) => {
  const broker = await startBroker(t)
  const eve = await connectInbox(t, broker.mqttUrl, {
    clientId: 'eve',
    password: sign({ sub: 'eve', acl: { sub: ['sensors/#', '!sensors/secret/#'] } }),
  })
  t.same(await suback(eve.client, ['sensors/#', 'sensors/secret/#']), [1, 128], 'the wildcard is granted, the denied subtree is not')

  // the admin sees both messages, so both really were published
  const root = await connectInbox(t, broker.mqttUrl, { clientId: 'root', password: admin })
  t.same(await suback(root.client, ['sensors/#']), [1])

  const publisher = await connect(t, broker.mqttUrl, { clientId: 'sensor-hub', password: sign({ sub: 'hub', acl: { pub: ['sensors/#'] } }) })
  await publisher.publishAsync('sensors/secret/x', 'hidden', { qos: 1 })
  await publisher.publishAsync('sensors/public/y', 'visible', { qos: 1 })
  t.equal((await eve.next()).topic, 'sensors/public/y', 'the denied topic was filtered at delivery')
  await root.waitFor(2)
  t.same(topicsOf(root), ['sensors/secret/x', 'sensors/public/y'])
  t.same(topicsOf(eve), ['sensors/public/y'])
})
