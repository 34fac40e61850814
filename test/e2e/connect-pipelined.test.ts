import { execFile, spawn } from 'node:child_process'
import { connect as tcpConnect, type Socket } from 'node:net'
import { promisify } from 'node:util'
import mqttPacket, { type Packet } from 'mqtt-packet'
import t from 'tap'
import { brokerEvent, connect, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { within } from '../helpers/within.js'

/**
 * A client that writes its SUBSCRIBE and PUBLISH together with its CONNECT,
 * without waiting for the CONNACK (small devices do). aedes keeps those packets
 * until the CONNECT's last step is done, and with Herald's patch to aedes
 * (scripts/patch-aedes.mjs) that last step ends at once for a session with
 * nothing queued, and runs the queue's pipeline for one with queued messages:
 * both paths, with a will, overlapping filters, and mosquitto_pub/mosquitto_sub
 * on the other side.
 */

const run = promisify(execFile)
const ann = sign({ sub: 'ann' })

/** A raw MQTT 3.1.1 connection: what it writes, and every packet the broker sent, in order. */
class RawClient {
  readonly packets: Packet[] = []
  readonly #socket: Socket
  #changed = (): void => {}

  constructor (t: Teardown, broker: TestBroker) {
    this.#socket = tcpConnect(broker.ports.mqtt, '127.0.0.1')
    t.teardown(() => { this.#socket.destroy() })
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (packet: Packet) => { this.packets.push(packet); this.#changed() })
    this.#socket.on('data', (chunk: Buffer) => parser.parse(chunk))
  }

  /** All the packets in one socket write. */
  write (packets: Packet[]): void {
    this.#socket.write(Buffer.concat(packets.map((packet) => mqttPacket.generate(packet))))
  }

  async until (what: string, done: (packets: Packet[]) => boolean): Promise<void> {
    await within(5000, what, new Promise<void>((resolve) => {
      this.#changed = () => { if (done(this.packets)) resolve() }
      this.#changed()
    }))
  }

  /** Gone without a DISCONNECT: its will is published. */
  drop (): void {
    this.#socket.destroy()
  }
}

const connectPacket = (clientId: string, clean: boolean, will?: { topic: string, payload: string }): Packet => ({
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean,
  clientId,
  keepalive: 60,
  username: 'ann',
  password: Buffer.from(ann),
  ...(will !== undefined && { will: { topic: will.topic, payload: Buffer.from(will.payload), qos: 1, retain: false } }),
})

const publishPacket = (topic: string, payload: string, messageId: number): Packet =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, messageId })

const publishes = (packets: Packet[]): Array<{ topic: string, payload: string }> =>
  packets.flatMap((p) => p.cmd === 'publish' ? [{ topic: p.topic, payload: p.payload.toString() }] : [])

/** mosquitto_sub waiting for one message on `topic`, subscribed when this resolves; `output` is what it printed. */
async function mosquittoSubOne (t: Teardown, broker: TestBroker, clientId: string, topic: string): Promise<{ output: Promise<string> }> {
  const subscribed = brokerEvent(broker, 'subscribe', clientId)
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', clientId, '-u', 'ann', '-P', ann, '-t', topic, '-q', '1', '-C', '1', '-v'])
  t.teardown(() => { sub.kill() })
  let output = ''
  sub.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  // 'close', not 'exit': 'exit' may come before the last stdout chunk has been read
  const closed = new Promise<string>((resolve) => sub.once('close', () => resolve(output.trim())))
  await subscribed
  // wrapped: an async function returning a promise would wait for it
  return { output: closed }
}

for (const clean of [true, false]) {
  t.test(`clean = ${clean}, nothing queued: CONNECT, SUBSCRIBE to overlapping filters and PUBLISH in one write; its will reaches mosquitto_sub`, async (t) => {
    const broker = await startBroker(t)
    const will = await mosquittoSubOne(t, broker, `will-watcher-${clean}`, 'users/ann/status')

    const raw = new RawClient(t, broker)
    raw.write([
      connectPacket(`pipelined-${clean}`, clean, { topic: 'users/ann/status', payload: 'gone' }),
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'users/ann/#', qos: 1 }, { topic: 'users/ann/+', qos: 1 }] },
      publishPacket('users/ann/a', 'first', 2),
      publishPacket('users/ann/a', 'second', 3),
    ])
    await raw.until('both messages come back', (packets) => publishes(packets).some((p) => p.payload === 'second'))

    const [connack] = raw.packets
    t.equal(connack?.cmd, 'connack', 'the CONNACK comes first [MQTT-3.2.0-1]')
    t.equal(connack?.cmd === 'connack' ? connack.returnCode : undefined, 0)
    t.equal(connack?.cmd === 'connack' ? connack.sessionPresent : undefined, false)
    const suback = raw.packets.find((p) => p.cmd === 'suback')
    t.same(suback?.cmd === 'suback' ? suback.granted : undefined, [1, 1], 'both filters granted')
    // the messages come back once each, though both filters match them
    t.same(publishes(raw.packets), [{ topic: 'users/ann/a', payload: 'first' }, { topic: 'users/ann/a', payload: 'second' }])
    await raw.until('both PUBACKs', (packets) => packets.filter((p) => p.cmd === 'puback').length === 2)
    t.same(raw.packets.flatMap((p) => p.cmd === 'puback' ? [p.messageId] : []), [2, 3], 'PUBACKs in PUBLISH order [MQTT-4.6.0-2]')

    raw.drop()
    t.equal(await within(5000, 'the will', will.output), 'users/ann/status gone')
  })
}

t.test('clean = false with queued messages: CONNECT and PUBLISH in one write get the CONNACK, the queue (from mosquitto_pub), then the new message', async (t) => {
  const broker = await startBroker(t)
  const first = await connect(t, broker.mqttUrl, { clientId: 'pipelined-queue', username: 'ann', password: ann, clean: false })
  await first.subscribeAsync(['users/ann/#', 'users/ann/inbox'], { qos: 1 })
  await first.endAsync()

  for (const n of [1, 2]) {
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', `svc-${n}`, '-u', 'svc', '-P', sign({ sub: 'svc', role: 'service' }), '-t', 'users/ann/inbox', '-m', `queued ${n}`, '-q', '1'])
  }

  const raw = new RawClient(t, broker)
  raw.write([connectPacket('pipelined-queue', false), publishPacket('users/ann/b', 'new', 7)])
  await raw.until('the queued messages and the new one', (packets) => publishes(packets).length >= 3)

  const [connack] = raw.packets
  t.equal(connack?.cmd, 'connack', 'the CONNACK comes first [MQTT-3.2.0-1]')
  t.equal(connack?.cmd === 'connack' ? connack.sessionPresent : undefined, true, 'the session was resumed')
  const received = publishes(raw.packets)
  t.same(received.slice(0, 2), [{ topic: 'users/ann/inbox', payload: 'queued 1' }, { topic: 'users/ann/inbox', payload: 'queued 2' }], 'the queue first, in order, once each')
  t.same(received.slice(2), [{ topic: 'users/ann/b', payload: 'new' }])
  await raw.until('its PUBACK', (packets) => packets.some((p) => p.cmd === 'puback' && p.messageId === 7))
})

t.test('mqtt.js, clean = false: subscribe() and publish() without waiting for the SUBACK, and the message comes back', async (t) => {
  const broker = await startBroker(t)
  const client = await connect(t, broker.mqttUrl, { clientId: 'eager', username: 'ann', password: ann, clean: false })
  const received = new Promise<string>((resolve) => client.once('message', (topic, payload) => resolve(`${topic} ${payload.toString()}`)))
  void client.subscribeAsync('users/ann/eager', { qos: 1 })
  await client.publishAsync('users/ann/eager', 'own message', { qos: 1 })
  t.equal(await within(5000, 'its own message', received), 'users/ann/eager own message')
})
