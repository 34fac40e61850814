import { connect as tcpConnect } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { within } from '../helpers/within.js'

// [MQTT-3.2.0-1] The first packet a server sends to a client is the CONNACK. aedes 1.2 subscribes a resumed
// session's filters before it writes the CONNACK (restoreSubs, then storeWill and registerClient); a message
// published in between was written to the connection first. With a session store in Redis that window is
// milliseconds, and a device taking its session over from another node under load never saw its CONNACK.
// Here the window is held open on purpose: the session store's delWill (aedes' storeWill step) waits for the test,
// then answers after a turn of the event loop, as a store across the network does.

t.test('a message published while a resumed session connects arrives after its CONNACK', async (t) => {
  const broker = await startBroker(t)
  const sessions = broker.server.broker?.sessions
  if (sessions === undefined) throw new Error('broker not started')
  const device = { clientId: 'resumer', username: 'ann', password: sign({ sub: 'ann' }), clean: false }
  const first = await connect(t, broker.mqttUrl, device)
  await first.subscribeAsync('users/ann/inbox', { qos: 1 })
  await first.endAsync()

  // hold the next CONNECT between restoreSubs and the CONNACK
  let release = (): void => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  let reached = (): void => {}
  const inStoreWill = new Promise<void>((resolve) => { reached = resolve })
  const delWill = sessions.delWill.bind(sessions)
  sessions.delWill = async (client) => {
    if (client.id === 'resumer') {
      reached()
      await held
      // as a store that answers over the network (Redis) does: the rest of the CONNECT comes after I/O
      await new Promise((resolve) => setImmediate(resolve))
    }
    return await delWill(client)
  }

  const socket = tcpConnect(broker.ports.mqtt, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: Packet[] = []
  let got = (): void => {}
  parser.on('packet', (packet: Packet) => { packets.push(packet); got() })
  socket.on('data', (chunk: Buffer) => parser.parse(chunk))
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'resumer', keepalive: 60, username: 'ann', password: Buffer.from(device.password) }))
  await within(5000, 'the CONNECT reaches storeWill', inStoreWill)

  // a listener of the broker's bus, added after the resumed subscription: when it hears the message, the
  // resumed connection's delivery function has been called (mqemitter calls a message's listeners in one loop)
  const aedes = broker.server.broker?.aedes
  if (aedes === undefined) throw new Error('broker not started')
  const bus = (aedes as unknown as { mq: { on (topic: string, listener: (packet: unknown, done: () => void) => void): void } }).mq
  const emitted = new Promise<void>((resolve) => bus.on('users/ann/inbox', (_packet, done) => { done(); resolve() }))
  const service = await connect(t, broker.mqttUrl, { clientId: 'svc', username: 'svc', password: sign({ sub: 'svc', role: 'service' }) })
  await service.publishAsync('users/ann/inbox', 'during connect', { qos: 0 })
  await within(5000, 'the message is delivered to the connecting session', emitted)
  release()
  await within(5000, 'CONNACK and the message', new Promise<void>((resolve) => {
    got = () => { if (packets.length >= 2) resolve() }
    got()
  }))
  t.same(packets.map((p) => p.cmd).slice(0, 2), ['connack', 'publish'], 'CONNACK first, then the message')
})
