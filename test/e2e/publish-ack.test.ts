import type { MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'

// When every persistent subscriber of a QoS 1 message is connected, the message goes out at once and
// the publisher's PUBACK comes when they have all acknowledged it, or when it is on disk after
// storage.ackWaitMs (src/store/session-store.ts). A long wait here makes "on disk" never come first.
const waitForever = { storage: { ackWaitMs: 10_000 } }

const token = (sub: string, role = 'device'): string => sign({ sub, role })

/** A persistent subscriber that acknowledges a message only when the test says so. */
interface Subscriber {
  readonly client: MqttClient
  readonly received: string[]
  acknowledge (): void
  arrived (count: number): Promise<void>
}

async function subscriber (t: Test, broker: TestBroker, clientId: string, topic: string): Promise<Subscriber> {
  const client = await connect(t, broker.mqttUrl, { clientId, clean: false, password: token('alice') })
  const received: string[] = []
  const pending: Array<() => void> = []
  let onArrival = (): void => {}
  // mqtt.js sends the PUBACK when handleMessage calls back
  client.handleMessage = (packet, acknowledged) => {
    received.push(String(packet.payload))
    pending.push(() => acknowledged())
    onArrival()
  }
  await client.subscribeAsync(topic, { qos: 1 })
  return {
    client,
    received,
    acknowledge: () => pending.shift()?.(),
    arrived: async (count) => {
      while (received.length < count) await new Promise<void>((resolve) => { onArrival = resolve })
    },
  }
}

/** A broker that waits "forever" for acknowledgements, alice's phone and tablet subscribed to these filters, and a service to publish. */
async function setup (t: Test, phoneFilter: string, tabletFilter: string): Promise<{ phone: Subscriber, tablet: Subscriber, server: MqttClient }> {
  const broker = await startBroker(t, { overrides: waitForever })
  const phone = await subscriber(t, broker, 'phone-1', phoneFilter)
  const tablet = await subscriber(t, broker, 'tablet-1', tabletFilter)
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })
  return { phone, tablet, server }
}

t.test('a QoS 1 message reaches connected subscribers first; the PUBACK waits for their acknowledgements', async (t) => {
  const { phone, tablet, server } = await setup(t, 'users/alice/#', 'users/alice/#')
  const events: string[] = []
  const published = server.publishAsync('users/alice/news', 'one', { qos: 1 }).then(() => events.push('PUBACK'))
  await phone.arrived(1)
  await tablet.arrived(1)
  events.push('both received')
  phone.acknowledge()
  events.push('phone acknowledged')
  tablet.acknowledge()
  events.push('tablet acknowledged')
  await published
  t.same(events, ['both received', 'phone acknowledged', 'tablet acknowledged', 'PUBACK'])
})

t.test('PUBACKs go out in the order of the PUBLISHes, whoever acknowledges first [MQTT-4.6.0-2]', async (t) => {
  const { phone, tablet, server } = await setup(t, 'users/alice/a', 'users/alice/b')
  const pubacks: string[] = []
  const first = server.publishAsync('users/alice/a', 'first', { qos: 1 }).then(() => pubacks.push('first'))
  const second = server.publishAsync('users/alice/b', 'second', { qos: 1 }).then(() => pubacks.push('second'))
  await tablet.arrived(1)
  tablet.acknowledge()
  await phone.arrived(1)
  phone.acknowledge()
  await Promise.all([first, second])
  t.same(pubacks, ['first', 'second'])
})

t.test('a publisher subscribed to its own topic gets its PUBACK without waiting for itself', async (t) => {
  // shorter than the broker's ackWaitMs: a PUBACK that came only once the message was written fails by timeout
  t.setTimeout(waitForever.storage.ackWaitMs / 2)
  const broker = await startBroker(t, { overrides: waitForever })
  const phone = await connect(t, broker.mqttUrl, { clientId: 'phone-1', clean: false, password: token('alice') })
  await phone.subscribeAsync('users/alice/#', { qos: 1 })
  const echo = new Promise<string>((resolve) => phone.once('message', (_topic, payload) => resolve(String(payload))))
  // the broker waits for the phone's acknowledgement of the echo while it still handles the phone's PUBLISH
  await phone.publishAsync('users/alice/notes', 'to self', { qos: 1 })
  t.equal(await echo, 'to self')
})

t.test('storage.ackWaitMs 0: the PUBACK never waits for subscribers', async (t) => {
  const broker = await startBroker(t, { overrides: { storage: { ackWaitMs: 0 } } })
  const phone = await subscriber(t, broker, 'phone-1', 'users/alice/#')
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })
  await server.publishAsync('users/alice/news', 'one', { qos: 1 })
  await phone.arrived(1)
  t.same(phone.received, ['one'], 'delivered, never acknowledged, and the publisher has its PUBACK')
})

t.test('a message nobody acknowledges gets its PUBACK once it is on disk, after ackWaitMs of its own, also while the wait timer of an earlier, acknowledged message runs', async (t) => {
  // long enough that timer lateness on a loaded machine stays far from the bound below
  const ackWaitMs = 600
  const broker = await startBroker(t, { overrides: { storage: { ackWaitMs } } })
  const phone = await subscriber(t, broker, 'phone-1', 'users/alice/#')
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })
  // the first message arms the wait timer and is acknowledged at once: the timer runs on
  const first = server.publishAsync('users/alice/news', 'one', { qos: 1 })
  await phone.arrived(1)
  phone.acknowledge()
  await first
  // the second comes a third of the wait later (the scenario's timing, not a wait for an event), when the
  // timer armed by the first fires too early for it, and is never acknowledged: its PUBACK comes once its
  // record is written, ackWaitMs after it
  await new Promise((resolve) => setTimeout(resolve, ackWaitMs / 3))
  const sentAt = Date.now()
  await server.publishAsync('users/alice/news', 'two', { qos: 1 })
  const waited = Date.now() - sentAt
  await phone.arrived(2)
  t.same(phone.received, ['one', 'two'], 'both delivered; the second still unacknowledged')
  t.ok(waited >= ackWaitMs - 20, `the PUBACK waited for the acknowledgement first (${waited} ms)`)
  // re-armed for a whole period after the first timer fired, it waited about 1.7 periods
  t.ok(waited < ackWaitMs * 1.4, `and no longer than its own ackWaitMs (${waited} ms)`)
})
