import { execFile } from 'node:child_process'
import { connect as netConnect } from 'node:net'
import { promisify } from 'node:util'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { brokerEvent, connect, sign, startBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { within } from '../helpers/within.js'

// What a PUBLISH the ACL refuses costs its client (mqtt.deniedPublish), tried with Debian's
// mosquitto_pub: with `drop` it is acknowledged (mosquitto_pub exits 0) and reaches nobody.
const run = promisify(execFile)

const publishAs = async (port: number, qos: number, topic: string): Promise<{ ok: boolean, stderr: string }> => {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-i', `bob-q${qos}`, '-u', 'bob', '-P', sign({ sub: 'bob' }), '-t', topic, '-m', 'forged', '-q', String(qos)]
  return await run('mosquitto_pub', args, { timeout: 10_000 }).then(() => ({ ok: true, stderr: '' }), (err: { stderr?: string }) => ({ ok: false, stderr: err.stderr ?? '' }))
}

t.test('deniedPublish "drop": acknowledged at QoS 0, 1 and 2, delivered to nobody, retained nowhere, logged and counted', async (t) => {
  const broker = await startBroker(t, { overrides: { mqtt: { deniedPublish: 'drop' } }, captureLogs: true })
  const received: string[] = []
  const alice = await connect(t, broker.mqttUrl, { clientId: 'alice', password: sign({ sub: 'alice' }) }, (topic, payload) => { received.push(`${topic} ${String(payload)}`) })
  await alice.subscribeAsync('users/alice/#', { qos: 2 })

  for (const qos of [0, 1, 2]) {
    const result = await publishAs(broker.ports.mqtt, qos, 'users/alice/x')
    t.ok(result.ok, `QoS ${qos}: acknowledged, mosquitto_pub exits 0 (${result.stderr.trim()})`)
  }
  // a message alice may receive, published after the forged ones: it comes first if they were dropped
  const marker = new Promise<void>((resolve) => alice.on('message', (topic) => { if (topic === 'users/alice/marker') resolve() }))
  const service = await connect(t, broker.mqttUrl, { clientId: 'svc', password: sign({ sub: 'svc', role: 'service' }) })
  await service.publishAsync('users/alice/marker', 'ok', { qos: 1 })
  await marker
  t.same(received, ['users/alice/marker ok'], 'nothing forged was delivered')

  const metrics = await api(broker, 'GET', '/metrics')
  t.match(metrics.text, /herald_mqtt_publish_denied_total 3/)
  t.equal(broker.logs.filter((line) => line.msg === 'publish denied; acknowledged and dropped').length, 3)
})

t.test('deniedPublish "drop" stores no retained message', async (t) => {
  const broker = await startBroker(t, { overrides: { mqtt: { deniedPublish: 'drop' } } })
  const bob = await connect(t, broker.mqttUrl, { clientId: 'bob', password: sign({ sub: 'bob' }) })
  await bob.publishAsync('users/alice/retained', 'forged', { qos: 1, retain: true })
  await bob.publishAsync('users/bob/retained', 'own', { qos: 1, retain: true })
  const retained: string[] = []
  const admin = await connect(t, broker.mqttUrl, { clientId: 'root', password: sign({ sub: 'root', role: 'admin' }) }, (topic) => { retained.push(topic) })
  const own = new Promise<void>((resolve) => admin.on('message', (topic) => { if (topic === 'users/bob/retained') resolve() }))
  await admin.subscribeAsync(['users/alice/retained', 'users/bob/retained'], { qos: 1 })
  await own
  t.same(retained, ['users/bob/retained'])
})

t.test('deniedPublish "disconnect" (the default) closes the connection', async (t) => {
  const broker = await startBroker(t, { captureLogs: true })
  t.equal(broker.config.mqtt.deniedPublish, 'disconnect')
  const received: string[] = []
  const alice = await connect(t, broker.mqttUrl, { clientId: 'alice', password: sign({ sub: 'alice' }) }, (topic) => { received.push(topic) })
  await alice.subscribeAsync('users/alice/#', { qos: 1 })
  const closed = brokerEvent(broker, 'clientDisconnect', 'bob-q1')
  const result = await publishAs(broker.ports.mqtt, 1, 'users/alice/x')
  t.notOk(result.ok, 'mosquitto_pub saw the connection close before its PUBACK')
  await within(5000, 'the broker closing the connection', closed)
  t.ok(broker.logs.some((line) => line.msg === 'publish denied; closing the connection' && line.clientId === 'bob-q1'), 'closed because the PUBLISH was denied')
  // nothing was delivered: a message published after it comes first
  const marker = new Promise<void>((resolve) => alice.on('message', (topic) => { if (topic === 'users/alice/marker') resolve() }))
  const service = await connect(t, broker.mqttUrl, { clientId: 'svc', password: sign({ sub: 'svc', role: 'service' }) })
  await service.publishAsync('users/alice/marker', 'ok', { qos: 1 })
  await marker
  t.same(received, ['users/alice/marker'])
})

t.test('a topic with NUL is refused and a filter with `+` in part of a level gets SUBACK 0x80', async (t) => {
  const broker = await startBroker(t)
  // raw packets: mqtt.js and mosquitto_sub refuse to send such filters themselves
  const socket = netConnect(broker.ports.mqtt, '127.0.0.1')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: mqttPacket.Packet[] = []
  let onPacket = (): void => {}
  parser.on('packet', (packet) => { packets.push(packet); onPacket() })
  socket.on('data', (bytes) => parser.parse(bytes))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('error', () => {})
  let isClosed = false
  void closed.then(() => { isClosed = true; onPacket() })
  const next = async (cmd: string): Promise<mqttPacket.Packet> => {
    while (!packets.some((packet) => packet.cmd === cmd)) {
      if (isClosed) throw new Error(`the connection closed before a ${cmd}`)
      await new Promise<void>((resolve) => { onPacket = resolve })
    }
    return packets.find((packet) => packet.cmd === cmd) as mqttPacket.Packet
  }
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'raw', keepalive: 30, username: 'alice', password: Buffer.from(sign({ sub: 'alice' })) }))
  t.equal((await next('connack') as mqttPacket.IConnackPacket).returnCode, 0)
  // [MQTT-4.7.1-3] `+` fills a whole level. aedes closes the connection for most misplaced wildcards
  // itself (lib/utils.js validateTopic), but lets `+x` in the last level through
  const subscriptions = ['users/alice/+x', 'users/alice/+'].map((topic) => ({ topic, qos: 1 as const }))
  socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions }))
  t.same((await next('suback') as mqttPacket.ISubackPacket).granted, [128, 1])

  // [MQTT-4.7.3-2] no NUL in a topic name
  socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'users/alice/a\u0000b', payload: Buffer.from('x'), qos: 0, retain: true, dup: false }))
  await within(5000, 'the connection closing after a topic with NUL', closed)
  t.pass('the connection was closed')
})

t.test('a retained message beyond limits.maxRetainedPerUser is refused by the deniedPublish policy', async (t) => {
  const broker = await startBroker(t, { overrides: { mqtt: { deniedPublish: 'drop' }, limits: { maxRetainedPerUser: 1 } } })
  const alice = await connect(t, broker.mqttUrl, { clientId: 'alice', password: sign({ sub: 'alice' }) })
  await alice.publishAsync('users/alice/state/a', 'kept', { qos: 1, retain: true })
  // a second retained topic is over the bound: acknowledged and dropped, the connection stays
  await alice.publishAsync('users/alice/state/b', 'refused', { qos: 1, retain: true })
  t.ok(alice.connected, 'still connected')
  const retained: string[] = []
  const reader = await connect(t, broker.mqttUrl, { clientId: 'reader', password: sign({ sub: 'alice' }) }, (topic) => { retained.push(topic) })
  const kept = new Promise<void>((resolve) => reader.on('message', (topic) => { if (topic === 'users/alice/state/a') resolve() }))
  await reader.subscribeAsync(['users/alice/state/b', 'users/alice/state/a'], { qos: 1 })
  await kept
  t.same(retained, ['users/alice/state/a'])
  t.match((await api(broker, 'GET', '/metrics')).text, /herald_mqtt_publish_denied_total 1/)
})
