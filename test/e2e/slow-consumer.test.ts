import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { brokerEvent, connect, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { within } from '../helpers/within.js'

// A subscriber that stops reading its socket must not hold back the topic, its publisher or the
// HTTP API: past limits.maxOutgoingBytes its messages are dropped (QoS 0, clean sessions) or left
// in its queue with the connection closed (persistent sessions); a connection that reads nothing
// for limits.slowClientTimeoutMs is closed.

const PAYLOAD = Buffer.alloc(8 * 1024, 'x')
/** More than loopback's socket buffers take in before the broker has to hold bytes itself. */
const MESSAGES = 3000

/** A raw MQTT client that connects, subscribes, and then never reads again. */
async function stalledSubscriber (broker: TestBroker, clientId: string, topic: string, clean: boolean): Promise<{ socket: Socket }> {
  const socket = netConnect(broker.ports.mqtt, '127.0.0.1')
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const subacked = new Promise<void>((resolve, reject) => {
    parser.on('packet', (packet) => { if (packet.cmd === 'suback') resolve() })
    void closed.then(() => reject(new Error('closed before SUBACK')))
  })
  const read = (bytes: Buffer): void => { parser.parse(bytes) }
  socket.on('data', read)
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean, clientId, keepalive: 0, username: 'alice', password: Buffer.from(sign({ sub: 'alice' })) }))
  socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] }))
  await subacked
  socket.off('data', read)
  socket.pause()
  return { socket }
}

/** Publishes MESSAGES QoS 1 messages (`<n>:` and 8 kB), at most 64 waiting for their PUBACK at a time. */
async function flood (t: Teardown, broker: TestBroker, topic: string): Promise<void> {
  const publisher = await connect(t, broker.mqttUrl, { clientId: `publisher-${topic}`, password: sign({ sub: 'svc', role: 'service' }) })
  for (let sent = 0; sent < MESSAGES; sent += 64) {
    await Promise.all(Array.from({ length: Math.min(64, MESSAGES - sent) }, async (_, i) => await publisher.publishAsync(topic, Buffer.concat([Buffer.from(`${sent + i}:`), PAYLOAD]), { qos: 1 })))
  }
}

/** A stalled subscriber `clientId` on `users/alice/flood`, flooded until the broker closes its connection. */
async function floodUntilClosed (t: Teardown, broker: TestBroker, clientId: string, clean: boolean): Promise<void> {
  const stalled = await stalledSubscriber(broker, clientId, 'users/alice/flood', clean)
  // the stalled peer cannot notice the close itself: it reads nothing
  const closed = brokerEvent(broker, 'clientDisconnect', clientId)
  await flood(t, broker, 'users/alice/flood')
  await closed
  stalled.socket.destroy()
}

const metric = async (broker: TestBroker, pattern: RegExp): Promise<number> => {
  const match = pattern.exec((await api(broker, 'GET', '/metrics')).text)
  return match === null ? 0 : Number(match[1])
}

t.test('a subscriber that stops reading does not stall the topic, its publisher or HTTP publishes', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { slowClientTimeoutMs: 600_000 } } })
  const topic = 'users/alice/flood'
  const stalled = await stalledSubscriber(broker, 'stalled', topic, true)

  let received = 0
  let onAll = (): void => {}
  const all = new Promise<void>((resolve) => { onAll = resolve })
  const reader = await connect(t, broker.mqttUrl, { clientId: 'reader', password: sign({ sub: 'alice' }) }, () => { if (++received === MESSAGES + 1) onAll() })
  await reader.subscribeAsync(topic, { qos: 1 })

  await flood(t, broker, topic)
  const http = await api(broker, 'POST', '/v1/publish', { token: sign({ sub: 'svc', role: 'service' }), body: { topic, payload: 'after the flood', qos: 1 } })
  t.equal(http.status, 202, 'an HTTP publish to the topic is answered')
  // a lost message fails here rather than hanging until tap's timeout
  await within(60_000, 'every message to the reading subscriber', all)
  t.equal(received, MESSAGES + 1, 'the reading subscriber got every message')

  const aedes = broker.server.broker?.aedes as unknown as { clients: Record<string, { conn: { outgoingBytes: number } } | undefined> }
  const conn = aedes.clients.stalled?.conn
  t.ok(conn !== undefined, 'the stalled subscriber is still connected (it has not yet been stalled for slowClientTimeoutMs)')
  // the limit is checked as each message is handed over; those of one read from the publisher go out together
  t.ok((conn?.outgoingBytes ?? Infinity) <= broker.config.limits.maxOutgoingBytes + 128 * 1024, `what the broker holds for it is bounded (${conn?.outgoingBytes} bytes)`)
  t.ok(await metric(broker, /herald_mqtt_slow_client_dropped_total\{qos="1"\} (\d+)/) > 0, 'messages it could not take were dropped and counted')
  stalled.socket.destroy()
})

t.test('a connection that reads nothing for slowClientTimeoutMs is closed', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { slowClientTimeoutMs: 500 } } })
  await floodUntilClosed(t, broker, 'stalled', true)
  t.equal(await metric(broker, /herald_mqtt_slow_client_disconnects_total\{reason="stalled"\} (\d+)/), 1)
})

t.test('a persistent session that falls behind is disconnected and finds its messages queued', async (t) => {
  // no queue bound: every message must come back
  const broker = await startBroker(t, { overrides: { limits: { slowClientTimeoutMs: 600_000, maxQueuedMessagesPerSession: 0 } } })
  await floodUntilClosed(t, broker, 'behind', false)
  t.equal(await metric(broker, /herald_mqtt_slow_client_disconnects_total\{reason="behind"\} (\d+)/), 1)

  // reading this time: every message comes, from the queue or as it went out before
  const seen = new Set<string>()
  let onAll = (): void => {}
  const all = new Promise<void>((resolve) => { onAll = resolve })
  await connect(t, broker.mqttUrl, { clientId: 'behind', clean: false, password: sign({ sub: 'alice' }) }, (_topic, payload) => {
    seen.add(payload.subarray(0, payload.indexOf(':')).toString())
    if (seen.size === MESSAGES) onAll()
  })
  await within(60_000, 'every queued message after reconnecting', all)
  t.equal(seen.size, MESSAGES, 'every message, none lost')
})
