import { connect as tcpConnect } from 'node:net'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connackCode, connackOf, connect, nextMessage, sign, startBroker } from '../helpers/broker.js'
import { connectInbox, text } from '../helpers/mqtt-inbox.js'

const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })

const closeOf = async (client: MqttClient): Promise<void> => await new Promise((resolve) => client.once('close', () => resolve()))

/**
 * A message from `sender` to `receiver` (subscribed to `topic`) arrives: the
 * receiver's connection is live. Resolves 'receiver closed' if it goes instead.
 */
async function roundTrip (sender: MqttClient, receiver: MqttClient, topic: string, body: string): Promise<string> {
  if (!receiver.connected) return 'receiver closed'
  const closed = closeOf(receiver).then(() => 'receiver closed')
  const got = nextMessage(receiver, topic).then((message) => message.payload.toString())
  await sender.publishAsync(topic, body, { qos: 1 })
  return await Promise.race([got, closed])
}

function utf8Field (value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8')
  const length = Buffer.alloc(2)
  length.writeUInt16BE(bytes.length)
  return Buffer.concat([length, bytes])
}

function remainingLength (length: number): Buffer {
  const bytes: number[] = []
  do {
    let byte = length % 128
    length = Math.floor(length / 128)
    if (length > 0) byte |= 0x80
    bytes.push(byte)
  } while (length > 0)
  return Buffer.from(bytes)
}

/**
 * Sends an MQTT 3.1.1 CONNECT over a raw socket and resolves the CONNACK
 * return code. mqtt.js refuses to send some CONNECTs a broker must handle
 * (an empty client id with clean=false), so this one is built by hand.
 */
async function rawConnack (port: number, { clientId, clean, password }: { clientId: string, clean: boolean, password: string }): Promise<number> {
  const flags = 0x80 | 0x40 | (clean ? 0x02 : 0) // username, password, clean session
  const body = Buffer.concat([
    utf8Field('MQTT'), Buffer.from([4, flags, 0, 60]),
    utf8Field(clientId), utf8Field('device'), utf8Field(password),
  ])
  const packet = Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body])
  return await new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => socket.write(packet))
    let reply = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk])
      if (reply.length < 4) return
      socket.destroy()
      if (reply[0] !== 0x20 || reply[1] !== 2) reject(new Error(`not a CONNACK: ${reply.toString('hex')}`))
      else resolve(reply[3] as number)
    })
    socket.on('error', reject)
    socket.on('close', () => reject(new Error('closed before CONNACK')))
  })
}

t.test('a persistent session keeps QoS1 messages published while the client is offline', async (t) => {
  const broker = await startBroker(t)
  const session = { clientId: 'alice-phone', clean: false, password: alice }
  const first = await connect(t, broker.mqttUrl, session)
  t.equal(connackOf(first).sessionPresent, false, 'a new session')
  t.same((await first.subscribeAsync('users/alice/#', { qos: 1 })).map((g) => g.qos), [1])
  await first.endAsync()

  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  for (const body of ['one', 'two', 'three']) await server.publishAsync('users/alice/news', body, { qos: 1 })

  const back = await connectInbox(t, broker.mqttUrl, session)
  t.equal(back.connack.sessionPresent, true, 'the session was restored')
  await back.waitFor(3)
  t.same(back.messages.map(text), ['one', 'two', 'three'], 'queued messages arrive in order after reconnect')

  // the restored subscription is live too
  t.equal(await roundTrip(server, back.client, 'users/alice/live', 'four'), 'four')
})

t.test('a persistent session and its queue survive a graceful broker restart', async (t) => {
  const first = await startBroker(t)
  const session = { clientId: 'alice-phone', clean: false, password: alice }
  const device = await connect(t, first.mqttUrl, session)
  await device.subscribeAsync('users/alice/#', { qos: 1 })
  await device.endAsync()
  const server = await connect(t, first.mqttUrl, { clientId: 'backend', password: service })
  for (const body of ['one', 'two']) await server.publishAsync('users/alice/news', body, { qos: 1 })
  await first.stop()

  const second = await startBroker(t, { dataDir: first.dataDir })
  const back = await connectInbox(t, second.mqttUrl, session)
  t.equal(back.connack.sessionPresent, true, 'the session was restored from disk')
  await back.waitFor(2)
  t.same(back.messages.map(text), ['one', 'two'])

  // messages published after the restart reach the restored subscription
  const server2 = await connect(t, second.mqttUrl, { clientId: 'backend', password: service })
  t.equal(await roundTrip(server2, back.client, 'users/alice/news', 'three'), 'three')
  t.same(back.messages.map(text), ['one', 'two', 'three'], 'and nothing was delivered twice')
})

t.test('another user can never take over a persistent client id, even after a restart', async (t) => {
  const first = await startBroker(t)
  const session = { clientId: 'alice-phone', clean: false, password: alice }
  const device = await connect(t, first.mqttUrl, session)
  await device.subscribeAsync('users/alice/#', { qos: 1 })

  t.equal(await connackCode(first.mqttUrl, { clientId: 'alice-phone', clean: false, password: bob }), 5, 'while alice is connected')
  t.equal(await connackCode(first.mqttUrl, { clientId: 'alice-phone', clean: true, password: bob }), 5, 'while alice is connected, clean=true')
  t.ok(device.connected, 'alice\'s connection survived the attempts')
  await device.endAsync()
  t.equal(await connackCode(first.mqttUrl, { clientId: 'alice-phone', clean: false, password: bob }), 5, 'while alice is offline')
  t.equal(await connackCode(first.mqttUrl, { clientId: 'alice-phone', clean: true, password: bob }), 5, 'while alice is offline, clean=true')
  t.equal(await connackCode(first.mqttUrl, { clientId: 'alice-phone', clean: false, password: service }), 5, 'a service is another user too')
  await first.stop()

  const second = await startBroker(t, { dataDir: first.dataDir })
  t.equal(await connackCode(second.mqttUrl, { clientId: 'alice-phone', clean: false, password: bob }), 5, 'after a restart')
  t.equal(await connackCode(second.mqttUrl, { clientId: 'alice-phone', clean: true, password: bob }), 5, 'after a restart, clean=true')

  // bob's attempts did not disturb alice's session
  const back = await connect(t, second.mqttUrl, session)
  if (!t.equal(connackOf(back).sessionPresent, true, 'alice gets her session back')) return
  const server = await connect(t, second.mqttUrl, { clientId: 'backend', password: service })
  t.equal(await roundTrip(server, back, 'users/alice/x', 'still yours'), 'still yours')
})

t.test('another user cannot take a client id that is connected, even without a persistent session', async (t) => {
  const broker = await startBroker(t)
  const laptop = await connect(t, broker.mqttUrl, { clientId: 'alice-laptop', clean: true, password: alice })
  await laptop.subscribeAsync('users/alice/#', { qos: 1 })
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'alice-laptop', clean: true, password: bob }), 5)
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'alice-laptop', clean: false, password: bob }), 5)
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  t.equal(await roundTrip(server, laptop, 'users/alice/x', 'still connected'), 'still connected', 'alice\'s connection was not taken over')
})

t.test('the owner reconnecting with the same client id takes over the old connection', async (t) => {
  const broker = await startBroker(t)
  const session = { clientId: 'alice-phone', clean: false, password: alice }
  const old = await connect(t, broker.mqttUrl, session)
  await old.subscribeAsync('users/alice/#', { qos: 1 })
  const oldClosed = closeOf(old)

  const fresh = await connect(t, broker.mqttUrl, session)
  await oldClosed
  t.pass('the old connection was closed')
  t.equal(connackOf(fresh).sessionPresent, true)
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  t.equal(await roundTrip(server, fresh, 'users/alice/x', 'to the new one'), 'to the new one')
})

t.test('client id checks', async (t) => {
  const broker = await startBroker(t)
  const port = broker.ports.mqtt

  t.test('[MQTT-3.1.3-8] an empty client id needs clean session', async (t) => {
    t.equal(await rawConnack(port, { clientId: '', clean: false, password: alice }), 2, 'clean=false: identifier rejected')
    t.equal(await rawConnack(port, { clientId: '', clean: true, password: alice }), 0, 'clean=true: accepted')
    t.equal(await rawConnack(port, { clientId: 'alice-raw', clean: false, password: alice }), 0, 'the raw CONNECT itself is good')
  })

  t.test('a client id longer than limits.maxClientIdLength is rejected', async (t) => {
    const max = broker.config.limits.maxClientIdLength
    t.equal(await connackCode(broker.mqttUrl, { clientId: 'a'.repeat(max), password: alice }), 0, `${max} characters`)
    t.equal(await connackCode(broker.mqttUrl, { clientId: 'a'.repeat(max + 1), password: alice }), 2, `${max + 1} characters`)
    t.equal(await connackCode(broker.mqttUrl, { clientId: 'b'.repeat(max + 1), clean: false, password: alice }), 2, `${max + 1} characters, clean=false`)
  })
})

t.test('limits.maxConnectionsPerUser', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxConnectionsPerUser: 2 } } })
  const one = await connect(t, broker.mqttUrl, { clientId: 'alice-1', password: alice })
  await connect(t, broker.mqttUrl, { clientId: 'alice-2', password: alice })
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'alice-3', password: alice }), 5, 'the third concurrent connection is refused')
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'bob-1', password: bob }), 0, 'other users have their own limit')

  // a reconnect with a client id already in use takes it over and is not an extra connection
  const oneClosed = closeOf(one)
  const again = await connect(t, broker.mqttUrl, { clientId: 'alice-1', password: alice })
  await oneClosed
  t.ok(again.connected, 'reconnecting with alice-1 is accepted')
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'alice-3', password: alice }), 5, 'still two connections: a new one is refused')
})

t.test('limits.connectRatePerIp', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { connectRatePerIp: { points: 3, windowSec: 60 } } } })
  for (let n = 1; n <= 3; n++) {
    t.equal(await connackCode(broker.mqttUrl, { clientId: `alice-${n}`, password: alice }), 0, `attempt ${n} accepted`)
  }
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'alice-4', password: alice }), 3, 'the fourth attempt in the window: server unavailable')
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'bob-1', password: bob }), 3, 'the limit is per IP, not per user')
})
