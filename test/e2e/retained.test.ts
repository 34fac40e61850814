import AedesPacket from 'aedes-packet'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import type { SessionStorage } from '../../src/store/session-storage.js'
import { connect, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

// Retained messages (issue 14, item 2): a SUBSCRIBE costs what it matches, not
// what is stored; wildcard filters get the right ones, after a restart too;
// retained topics per user are bounded.

const admin = sign({ sub: 'root', role: 'admin' })

function sessionsOf (broker: TestBroker): SessionStorage {
  const sessions = broker.server.broker?.sessions
  if (sessions === undefined) throw new Error('broker not started')
  return sessions
}

/** Stores a retained message through the session store, as aedes' publish pipeline does. */
async function storeRetained (broker: TestBroker, topic: string, body: string): Promise<void> {
  const aedes = broker.server.broker?.aedes
  await sessionsOf(broker).storeRetained(new AedesPacket({ cmd: 'publish', topic, payload: Buffer.from(body), qos: 0, retain: true }, aedes) as never)
}

/**
 * A retained message no client can publish (a `$` topic), subscribed last in
 * each SUBSCRIBE below: the retained messages of one SUBSCRIBE come in the
 * order of its filters, so once it is here every other one has come.
 */
const MARKER = '$herald-test/marker'

let clients = 0

/** The retained messages (`topic payload`) a new admin connection gets for one SUBSCRIBE with these filters. */
async function retainedFor (t: Teardown, broker: TestBroker, filters: string[]): Promise<string[]> {
  const received: string[] = []
  let done: () => void = () => {}
  const marked = new Promise<void>((resolve) => { done = resolve })
  const client = await connect(t, broker.mqttUrl, { clientId: `reader-${++clients}`, password: admin }, (topic, payload, packet) => {
    // live messages ($SYS announcements of this SUBSCRIBE) are not what is asked about
    if (!packet.retain) return
    if (topic === MARKER) done()
    else received.push(`${topic} ${payload.toString()}`)
  })
  await client.subscribeAsync([...filters, MARKER], { qos: 1 })
  await marked
  await client.endAsync()
  return received.sort()
}

t.test('wildcard filters get the retained messages they match, and the same after a restart', async (t) => {
  const first = await startBroker(t)
  await storeRetained(first, MARKER, 'x')
  const publisher = await connect(t, first.mqttUrl, { clientId: 'publisher', password: admin })
  for (const topic of ['users/alice', 'users/alice/status', 'users/alice/devices/phone/status', 'users/alice/a//b', 'users/bob/status', 'groups/ops/news', 'users/bob/gone']) {
    await publisher.publishAsync(topic, `${topic}!`, { qos: 1, retain: true })
  }
  // [MQTT-3.3.1-10] a retained message with an empty payload deletes the topic's retained message
  await publisher.publishAsync('users/bob/gone', '', { qos: 1, retain: true })
  await publisher.publishAsync('users/bob/status', 'replaced', { qos: 1, retain: true })
  await publisher.publishAsync('users/bob/live', 'not retained', { qos: 1, retain: false })
  await storeRetained(first, '$SYS/herald/test', 'sys')

  const expectations: Array<[string[], string[]]> = [
    // [MQTT-4.7.1-2] `#` matches the parent level too
    [['users/alice/#'], ['users/alice users/alice!', 'users/alice/a//b users/alice/a//b!', 'users/alice/devices/phone/status users/alice/devices/phone/status!', 'users/alice/status users/alice/status!']],
    [['users/+/status'], ['users/alice/status users/alice/status!', 'users/bob/status replaced']],
    [['users/+'], ['users/alice users/alice!']],
    [['users/alice/a/+/b'], ['users/alice/a//b users/alice/a//b!']],
    [['+/+/devices/+/status'], ['users/alice/devices/phone/status users/alice/devices/phone/status!']],
    [['users/bob/gone', 'users/bob/live', 'nothing/#'], []],
    // [MQTT-4.7.2-1] a filter starting with a wildcard matches no `$` topic
    [['#'], ['groups/ops/news groups/ops/news!', 'users/alice users/alice!', 'users/alice/a//b users/alice/a//b!', 'users/alice/devices/phone/status users/alice/devices/phone/status!', 'users/alice/status users/alice/status!', 'users/bob/status replaced']],
    [['+/+/+'], ['groups/ops/news groups/ops/news!', 'users/alice/status users/alice/status!', 'users/bob/status replaced']],
    [['$SYS/#'], ['$SYS/herald/test sys']],
    // one copy of a message that several filters of the SUBSCRIBE match
    [['users/alice/status', 'users/+/status', 'users/alice/#'], ['users/alice users/alice!', 'users/alice/a//b users/alice/a//b!', 'users/alice/devices/phone/status users/alice/devices/phone/status!', 'users/alice/status users/alice/status!', 'users/bob/status replaced']],
  ]
  for (const [filters, expected] of expectations) t.same(await retainedFor(t, first, filters), expected, filters.join(' '))
  await first.stop()

  const second = await startBroker(t, { dataDir: first.dataDir })
  for (const [filters, expected] of expectations) t.same(await retainedFor(t, second, filters), expected, `after a restart: ${filters.join(' ')}`)
})

/** CPU time (user + system, µs) of this process while `count` SUBSCRIBEs each get zoe's retained message. */
async function subscribeCpu (zoe: MqttClient, count: number): Promise<number> {
  const started = process.cpuUsage()
  for (let i = 0; i < count; i++) {
    const got = new Promise<void>((resolve) => {
      const onMessage = (topic: string): void => {
        if (topic !== 'users/zoe/status') return
        zoe.off('message', onMessage)
        resolve()
      }
      zoe.on('message', onMessage)
    })
    // [MQTT-3.8.4-3] a SUBSCRIBE that replaces a subscription sends the retained messages again
    await zoe.subscribeAsync('users/zoe/#', { qos: 0 })
    await got
  }
  const used = process.cpuUsage(started)
  return used.user + used.system
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

t.test('a SUBSCRIBE costs no more CPU with 50,000 unrelated retained messages stored than with none', async (t) => {
  // the broker runs in this process: its CPU, and the test client's, which is the same for both brokers
  const overrides = { storage: { fsync: 'none' }, limits: { maxRetainedPerUser: 0 } }
  const empty = await startBroker(t, { overrides })
  const full = await startBroker(t, { overrides })
  // stored before zoe's own: aedes-persistence-level read all of them before hers, for every SUBSCRIBE
  const unrelated = Array.from({ length: 50_000 }, (_, i) => `users/device/t${i}`)
  for (let i = 0; i < unrelated.length; i += 1000) await Promise.all(unrelated.slice(i, i + 1000).map(async (topic) => await storeRetained(full, topic, 'x'.repeat(100))))
  const zoes: Record<'empty' | 'full', MqttClient> = { empty: undefined as unknown as MqttClient, full: undefined as unknown as MqttClient }
  for (const [name, broker] of [['empty', empty], ['full', full]] as const) {
    await storeRetained(broker, 'users/zoe/status', 'here')
    zoes[name] = await connect(t, broker.mqttUrl, { clientId: 'zoe', password: sign({ sub: 'zoe' }) })
    await subscribeCpu(zoes[name], 20) // warm-up
  }

  // rounds alternate between the brokers, so load from elsewhere on the machine falls on both
  const costs: Record<'empty' | 'full', number[]> = { empty: [], full: [] }
  for (let round = 0; round < 7; round++) {
    for (const name of ['empty', 'full'] as const) costs[name].push(await subscribeCpu(zoes[name], 25))
  }
  const perSubscribe = (name: 'empty' | 'full'): number => median(costs[name]) / 25
  t.comment(`CPU per SUBSCRIBE: ${perSubscribe('empty').toFixed(0)} µs with 1 retained message, ${perSubscribe('full').toFixed(0)} µs with 50,001 (rounds: ${costs.empty.join(', ')} / ${costs.full.join(', ')} µs)`)
  t.ok(perSubscribe('full') <= 2 * perSubscribe('empty'), `within 2x: ${perSubscribe('full').toFixed(0)} µs against ${perSubscribe('empty').toFixed(0)} µs`)
})

t.test('limits.maxRetainedPerUser: a retained message on a new topic beyond it is refused; replacing and deleting are not', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxRetainedPerUser: 2 } } })
  const live: string[] = []
  const watcher = await connect(t, broker.mqttUrl, { clientId: 'watcher', password: admin }, (topic, payload) => { live.push(`${topic} ${payload.toString()}`) })
  await watcher.subscribeAsync('users/alice/#', { qos: 1 })
  const token = sign({ sub: 'alice' })
  const alice = await connect(t, broker.mqttUrl, { clientId: 'alice-1', password: token })
  await alice.publishAsync('users/alice/a', 'first', { qos: 1, retain: true })
  await alice.publishAsync('users/alice/b', 'first', { qos: 1, retain: true })

  for (const qos of [1, 0] as const) {
    // refused like a PUBLISH the ACL refuses (mqtt.deniedPublish "disconnect"): no PUBACK, the connection closes
    const device = await connect(t, broker.mqttUrl, { clientId: `alice-q${qos}`, password: token })
    const outcome = await Promise.race([
      new Promise<string>((resolve) => device.once('close', () => resolve('closed'))),
      new Promise<string>((resolve) => watcher.on('message', (topic) => { if (topic === 'users/alice/c') resolve('delivered') })),
      device.publishAsync('users/alice/c', `refused at QoS ${qos}`, { qos, retain: true }).then(() => qos === 0 ? new Promise<string>(() => {}) : 'acknowledged', () => 'closed'),
    ])
    t.equal(outcome, 'closed', `QoS ${qos}: the connection was closed`)
  }
  const service = sign({ sub: 'backend', role: 'service' })
  const http = await api(broker, 'POST', '/v1/publish', { token, body: { topic: 'users/alice/d', payload: 'refused over HTTP', retain: true } })
  t.equal(http.status, 409)
  t.equal(http.body.error.code, 'TOO_MANY_RETAINED')
  t.match(http.body.error.message, /limits\.maxRetainedPerUser \(2\)/)
  const byService = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/e', payload: 'refused', retain: true } })
  t.equal(byService.status, 409, 'the bound is the namespace\'s, whoever publishes')
  const other = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/bob/a', payload: 'bob has his own bound', retain: true } })
  t.equal(other.status, 202)
  const notRetained = await api(broker, 'POST', '/v1/publish', { token, body: { topic: 'users/alice/f', payload: 'not retained', retain: false } })
  t.equal(notRetained.status, 202, 'a message that is not retained is not bounded')

  await alice.publishAsync('users/alice/a', 'replaced', { qos: 1, retain: true })
  await alice.publishAsync('users/alice/b', '', { qos: 1, retain: true })
  await alice.publishAsync('users/alice/c', 'room again', { qos: 1, retain: true })
  const last = new Promise<void>((resolve) => watcher.on('message', (topic) => { if (topic === 'users/alice/end') resolve() }))
  await alice.publishAsync('users/alice/end', 'end', { qos: 1 })
  await last
  t.same(live, ['users/alice/a first', 'users/alice/b first', 'users/alice/f not retained', 'users/alice/a replaced', 'users/alice/b ', 'users/alice/c room again', 'users/alice/end end'], 'a refused message reached nobody')

  await storeRetained(broker, MARKER, 'x')
  t.same(await retainedFor(t, broker, ['users/alice/#']), ['users/alice/a replaced', 'users/alice/c room again'])
})
