import type { IPublishPacket, MqttClient } from 'mqtt'
import t from 'tap'
import { brokerEvent, connect, makeTempDir, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { copiesOf, expectedQos, overlapCases, type OverlapCase as Case } from '../helpers/overlap-cases.js'

const cases = overlapCases()

/** The marker copiesOf() waits for, published by `publisher`. */
const markerFrom = (publisher: MqttClient) => async (topic: string): Promise<void> => { await publisher.publishAsync(topic, 'marker', { qos: 0 }) }

t.test('one copy at the highest QoS any matching subscription was granted', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'publisher', password: sign({ sub: 'svc', role: 'service' }) })
  await Promise.all(cases.map(async (c, n) => {
    const user = `u${n}`
    const subscriber = await subscribe(t, broker, user, c)
    const copies = await copiesOf(subscriber, `users/${user}/ov`, async () => {
      await publisher.publishAsync(`users/${user}/ov/t`, 'message', { qos: c.published })
    }, markerFrom(publisher))
    t.same(copies, [expectedQos(c)], `${c.name}: one copy at QoS ${expectedQos(c)}`)
  }))
})

t.test('a persistent session with overlapping QoS 2 subscriptions stays connected and gets nothing again on reconnect', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'publisher', password: sign({ sub: 'svc', role: 'service' }) })
  const c: Case = { name: 'persistent', filters: [['#', 2], ['+', 2]], published: 2, clean: false }
  const errors: string[] = []
  broker.server.broker?.aedes.on('clientError', (client, err) => { if (client.id === 'sub-alice') errors.push(err.message) })
  const first = await subscribe(t, broker, 'alice', c)
  const completed = new Promise<void>((resolve) => first.on('packetsend', (packet) => { if (packet.cmd === 'pubcomp') resolve() }))
  const copies = await copiesOf(first, 'users/alice/ov', async () => {
    await publisher.publishAsync('users/alice/ov/t', 'message', { qos: 2 })
  }, markerFrom(publisher))
  t.same(copies, [2])
  // the QoS 2 exchange with the subscriber (PUBREC, PUBREL, PUBCOMP), then one more round trip
  await completed
  await first.subscribeAsync('users/alice/other', { qos: 0 })
  t.same(errors, [], 'no error closed the connection')
  t.ok(first.connected, 'still connected')
  await first.endAsync()

  const ready = brokerEvent(broker, 'clientReady', 'sub-alice')
  const again = await connect(t, broker.mqttUrl, { clientId: 'sub-alice', clean: false, password: sign({ sub: 'alice' }) })
  await ready
  const afterReconnect = await copiesOf(again, 'users/alice/ov', async () => {}, markerFrom(publisher))
  t.same(afterReconnect, [], 'the message was not queued again')
})

t.test('a message queued for an offline persistent session goes out at the QoS its subscription was granted', async (t) => {
  const broker = await startBroker(t)
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'publisher', password: sign({ sub: 'svc', role: 'service' }) })
  const first = await subscribe(t, broker, 'alice', { name: 'offline', filters: [['#', 1]], published: 2, clean: false })
  await first.endAsync()
  await publisher.publishAsync('users/alice/ov/t', 'queued', { qos: 2 })

  let onPacket = (_packet: IPublishPacket): void => {}
  const arrived = new Promise<IPublishPacket>((resolve) => { onPacket = resolve })
  await connect(t, broker.mqttUrl, { clientId: 'sub-alice', clean: false, password: sign({ sub: 'alice' }) }, (_topic, _payload, packet) => onPacket(packet))
  const packet = await arrived
  t.same([String(packet.payload), packet.qos], ['queued', 1])
})

/** A client of `user` subscribed to each of the case's filters under `users/<user>/ov/`, and to the marker. */
async function subscribe (t: Teardown, broker: TestBroker, user: string, c: Case): Promise<MqttClient> {
  const client = await connect(t, broker.mqttUrl, { clientId: `sub-${user}`, clean: c.clean, password: sign({ sub: user }) })
  for (const [suffix, qos] of c.filters) {
    const granted = await client.subscribeAsync(`users/${user}/ov/${suffix}`, { qos })
    if (granted[0]?.qos !== qos) throw new Error(`subscription ${suffix} at ${qos} was granted ${granted[0]?.qos}`)
  }
  // the marker of copiesOf(), which no filter but this one may match in some cases
  await client.subscribeAsync(`users/${user}/ov/marker`, { qos: 0 })
  return client
}

t.test('a QoS 0 subscription inside a persistent wildcard one does not stop the wildcard queueing, before and after a restart', async (t) => {
  const dataDir = await makeTempDir(t)
  let broker = await startBroker(t, { dataDir })
  const alice = { clientId: 'sub-alice', clean: false, password: sign({ sub: 'alice' }) }
  const first = await connect(t, broker.mqttUrl, alice)
  await first.subscribeAsync('users/alice/ov/#', { qos: 1 })
  await first.subscribeAsync('users/alice/ov/b', { qos: 0 })
  await first.endAsync()

  const queuedFor = async (topic: string): Promise<string> => {
    const publisher = await connect(t, broker.mqttUrl, { clientId: 'publisher', password: sign({ sub: 'svc', role: 'service' }) })
    await publisher.publishAsync(topic, 'queued', { qos: 1 })
    await publisher.endAsync()
    let onMessage = (_topic: string): void => {}
    const arrived = new Promise<string>((resolve) => { onMessage = resolve })
    const client = await connect(t, broker.mqttUrl, alice, (received) => onMessage(received))
    const received = await arrived
    await client.endAsync()
    return received
  }
  t.equal(await queuedFor('users/alice/ov/c'), 'users/alice/ov/c', 'queued while the broker ran')
  await broker.stop()
  broker = await startBroker(t, { dataDir })
  t.equal(await queuedFor('users/alice/ov/d'), 'users/alice/ov/d', 'queued after a restart')
})
