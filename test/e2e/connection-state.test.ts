import { once } from 'node:events'
import { connect as tcpConnect, type Socket } from 'node:net'
import type { Client } from 'aedes'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { connect, nextMessage, sign, startBroker, type TestBroker } from '../helpers/broker.js'

const alice = sign({ sub: 'alice' })

/** A raw MQTT connection that parses what the broker sends. */
async function rawClient (t: Parameters<typeof connect>[0], port: number): Promise<{ socket: Socket, packets: mqttPacket.Packet[], packet: (cmd: string) => Promise<mqttPacket.Packet> }> {
  const socket = tcpConnect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: mqttPacket.Packet[] = []
  const waiting: Array<{ cmd: string, resolve: (packet: mqttPacket.Packet) => void }> = []
  parser.on('packet', (packet: mqttPacket.Packet) => {
    packets.push(packet)
    const index = waiting.findIndex((w) => w.cmd === packet.cmd)
    if (index !== -1) waiting.splice(index, 1)[0]?.resolve(packet)
  })
  socket.on('data', (chunk: Buffer) => parser.parse(chunk))
  const packet = async (cmd: string): Promise<mqttPacket.Packet> => {
    const seen = packets.find((p) => p.cmd === cmd)
    if (seen !== undefined) {
      packets.splice(packets.indexOf(seen), 1)
      return seen
    }
    return await new Promise((resolve) => waiting.push({ cmd, resolve: (p) => { packets.splice(packets.indexOf(p), 1); resolve(p) } }))
  }
  return { socket, packets, packet }
}

function liveClient (broker: TestBroker, clientId: string): Client {
  const client = broker.server.broker?.connections.connectionByClientId(clientId)
  if (client === undefined) throw new Error(`${clientId} is not connected`)
  return client
}

t.test('a packet split across CONNECT and the rest of the stream is parsed whole', async (t) => {
  // the broker swaps the parser's input buffer once the client is authenticated (broker/hooks.ts
  // slimParser): bytes of a packet that had not fully arrived then must carry over
  const broker = await startBroker(t)
  const raw = await rawClient(t, broker.ports.mqtt)
  const connectBytes = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'alice-raw', clean: true, keepalive: 60, username: 'alice', password: Buffer.from(alice) })
  const subscribe = mqttPacket.generate({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'users/alice/split', qos: 1 }] })
  raw.socket.write(Buffer.concat([connectBytes, subscribe.subarray(0, 5)]))
  const connack = await raw.packet('connack') as mqttPacket.IConnackPacket
  t.equal(connack.returnCode, 0)
  raw.socket.write(Buffer.concat([subscribe.subarray(5), mqttPacket.generate({ cmd: 'pingreq' })]))
  const suback = await raw.packet('suback') as mqttPacket.ISubackPacket
  t.equal(suback.messageId, 7)
  t.same(suback.granted, [1])
  await raw.packet('pingresp')
})

t.test('the token is not kept in memory for the life of the connection', async (t) => {
  const broker = await startBroker(t)
  const client = await connect(t, broker.mqttUrl, { clientId: 'alice-idle', password: alice })
  // mqtt-packet's parser kept the whole CONNECT packet, password included, as its settings
  const parser = (liveClient(broker, 'alice-idle') as unknown as { _parser: { settings: Record<string, unknown> } })._parser
  t.equal(parser.settings['password'], undefined, 'no password')
  t.equal(parser.settings['username'], undefined, 'no user name')
  t.equal(parser.settings['protocolVersion'], 4, 'what the parser still needs is there')
  // and the connection works as before
  await client.subscribeAsync('users/alice/x', { qos: 1 })
  const got = nextMessage(client, 'users/alice/x')
  await client.publishAsync('users/alice/x', 'still here', { qos: 1 })
  t.equal((await got).payload.toString(), 'still here')
})

t.test('an MQTT 3.1 client works after CONNECT too', async (t) => {
  const broker = await startBroker(t)
  const client = await connect(t, broker.mqttUrl, { clientId: 'alice-31', password: alice, protocolId: 'MQIsdp', protocolVersion: 3 })
  await client.subscribeAsync('users/alice/old', { qos: 1 })
  const got = nextMessage(client, 'users/alice/old')
  await client.publishAsync('users/alice/old', 'v3.1', { qos: 1 })
  t.equal((await got).payload.toString(), 'v3.1')
})

t.test('a closed connection leaves nothing in the registry, with or without an expiring token', async (t) => {
  const broker = await startBroker(t, { overrides: { auth: { jwt: { requireExp: false } } } })
  const connections = broker.server.broker?.connections
  if (connections === undefined) throw new Error('broker not started')
  const forever = sign({ sub: 'alice' }, { expiresIn: null })
  const expiring = sign({ sub: 'alice' }, { expiresIn: '1h' })
  const one = await connect(t, broker.mqttUrl, { clientId: 'alice-1', password: forever })
  const two = await connect(t, broker.mqttUrl, { clientId: 'alice-2', password: expiring })
  t.equal(connections.size, 2)
  // the registry forgets a connection when its stream closes; this listener runs after the broker's
  const closed = ['alice-1', 'alice-2'].map(async (id) => await once(liveClient(broker, id).conn, 'close'))
  await Promise.all([one.endAsync(), two.endAsync()])
  await Promise.all(closed)
  t.equal(connections.size, 0)
  t.equal(connections.countForOwner('user:alice', 'x'), 0)
})
