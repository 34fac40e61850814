import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { connect, nextMessage, sign, startBroker, type TestBroker } from '../helpers/broker.js'

/** Opens a raw TCP connection to the broker, sends `bytes`, and resolves once the broker closes it. */
async function sendAndAwaitClose (broker: TestBroker, ...writes: Buffer[]): Promise<void> {
  const socket: Socket = netConnect(broker.ports.mqtt, '127.0.0.1')
  socket.on('error', () => { /* the broker may reset the connection */ })
  socket.resume()
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  for (const bytes of writes) socket.write(bytes)
  await new Promise<void>((resolve) => socket.once('close', () => resolve()))
}

function connectPacket (token: string, clientId: string): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30, username: 'device', password: Buffer.from(token) })
}

/** A working client pair: proves the broker still routes messages after each bad connection. */
async function assertStillWorking (t: Test, broker: TestBroker, round: string): Promise<void> {
  const token = sign({ sub: 'alice' })
  const sub = await connect(t, broker.mqttUrl, { clientId: `sub-${round}`, password: token })
  await sub.subscribeAsync('users/alice/check', { qos: 1 })
  const pub = await connect(t, broker.mqttUrl, { clientId: `pub-${round}`, password: token })
  const arrived = nextMessage(sub, 'users/alice/check')
  await pub.publishAsync('users/alice/check', round, { qos: 1 })
  t.equal((await arrived).payload.toString(), round, `still routing after ${round}`)
}

t.test('malformed and oversized packets close only their own connection', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxPacketBytes: 4096 } } })
  const token = sign({ sub: 'alice' })

  // a long-lived client that must survive everything below
  const bystander = await connect(t, broker.mqttUrl, { clientId: 'bystander', password: token })
  await bystander.subscribeAsync('users/alice/#', { qos: 1 })
  let bystanderClosed = false
  bystander.on('close', () => { bystanderClosed = true })

  await sendAndAwaitClose(broker, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
  await assertStillWorking(t, broker, 'http-request')

  await sendAndAwaitClose(broker, Buffer.alloc(64, 0xff))
  await assertStillWorking(t, broker, 'ff-bytes')

  // remaining length with a fifth continuation byte
  await sendAndAwaitClose(broker, Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]))
  await assertStillWorking(t, broker, 'bad-varint')

  // a CONNECT that announces 200 MB: refused from its header, nothing buffered
  await sendAndAwaitClose(broker, Buffer.from([0x10, 0x80, 0x80, 0x80, 0x60]))
  await assertStillWorking(t, broker, 'huge-connect')

  // a valid session, then a PUBLISH one byte over the limit
  const oversized = mqttPacket.generate({ cmd: 'publish', topic: 'users/alice/x', payload: Buffer.alloc(4096), qos: 0, retain: false, dup: false })
  await sendAndAwaitClose(broker, connectPacket(token, 'too-big'), oversized)
  await assertStillWorking(t, broker, 'oversized-publish')

  // PUBLISH before CONNECT [MQTT-3.1.0-1]
  await sendAndAwaitClose(broker, mqttPacket.generate({ cmd: 'publish', topic: 'users/alice/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }))
  await assertStillWorking(t, broker, 'publish-before-connect')

  // a second CONNECT on the same connection [MQTT-3.1.0-2]
  await sendAndAwaitClose(broker, connectPacket(token, 'twice'), connectPacket(token, 'twice'))
  await assertStillWorking(t, broker, 'second-connect')

  // garbage over WebSocket
  const ws = new WebSocket(broker.wsUrl, 'mqtt')
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  const wsClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
  ws.send(Buffer.alloc(32, 0xff))
  await wsClosed
  await assertStillWorking(t, broker, 'ws-garbage')

  t.equal(bystanderClosed, false, 'the bystander connection stayed open')
  t.equal(bystander.connected, true)
})

t.test('a WebSocket upgrade on another path is refused', async (t) => {
  const broker = await startBroker(t)
  const ws = new WebSocket(`ws://127.0.0.1:${broker.ports.http}/not-mqtt`, 'mqtt')
  const status = await new Promise<number | undefined>((resolve) => {
    ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode); ws.terminate() })
    ws.once('error', () => resolve(undefined))
  })
  t.equal(status, 404)
})
