import { spawn, type ChildProcess } from 'node:child_process'
import t from 'tap'
import { brokerEvent, connect, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

// [MQTT-3.1.2-8] a will is published when the connection closes without DISCONNECT: here the
// dying client is Debian's mosquitto_sub (which subscribes) or mosquitto_pub -l (which does not),
// killed (the kernel closes its socket) or stopped until the broker's keepalive timer gives up
// ([MQTT-3.1.2-24]: 1.5 times the keepalive), with a clean and a persistent session.

interface Case {
  readonly subscribed: boolean
  readonly ending: 'kill' | 'keepalive'
  readonly clean: boolean
}

const cases: Case[] = []
for (const subscribed of [true, false]) {
  for (const ending of ['kill', 'keepalive'] as const) {
    for (const clean of [true, false]) cases.push({ subscribed, ending, clean })
  }
}

const nameOf = (c: Case): string => `${c.subscribed ? 'sub' : 'nosub'}-${c.ending}-${c.clean ? 'clean' : 'persistent'}`

/** The longest a will may take: the keepalive cases wait 1.5 × 5 s for the broker's timer. */
const WILL_DEADLINE_MS = 20_000

t.test('a will is published for every way a mosquitto client dies, with or without subscriptions', async (t) => {
  const broker = await startBroker(t)
  const wills = new Map<string, string[]>()
  const waiters = new Map<string, () => void>()
  const watcher = await connect(t, broker.mqttUrl, { clientId: 'watcher', password: sign({ sub: 'alice' }) }, (topic, payload) => {
    const name = topic.slice('users/alice/w/'.length)
    wills.set(name, [...(wills.get(name) ?? []), String(payload)])
    waiters.get(name)?.()
  })
  await watcher.subscribeAsync('users/alice/w/#', { qos: 1 })

  // all cases at once: the keepalive ones each wait 7.5 s for the broker
  const outcomes = await Promise.all(cases.map(async (c) => {
    const name = nameOf(c)
    const arrived = new Promise<boolean>((resolve) => {
      waiters.set(name, () => resolve(true))
      setTimeout(() => resolve(false), WILL_DEADLINE_MS).unref()
    })
    const dying = await startDyingClient(t, broker, name, c)
    dying.kill(c.ending === 'kill' ? 'SIGKILL' : 'SIGSTOP')
    return { name, arrived: await arrived }
  }))
  // published after every will: a second copy of one would have come before it
  const marker = new Promise<void>((resolve) => { waiters.set('marker', resolve) })
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'marker', password: sign({ sub: 'alice' }) })
  await publisher.publishAsync('users/alice/w/marker', 'marker', { qos: 1 })
  await marker
  for (const { name, arrived } of outcomes) {
    t.ok(arrived, `${name}: the will arrived`)
    t.same(wills.get(name), [name], `${name}: exactly one copy`)
  }
})

t.test('a will refused at close (the ACL changed since CONNECT) is logged', async (t) => {
  const broker = await startBroker(t, { captureLogs: true })
  const admin = sign({ sub: 'root', role: 'admin' })
  t.equal((await api(broker, 'PUT', '/v1/topics/status', { token: admin, body: { acl: { publish: ['user:alice'] } } })).status, 201)
  const dying = await startDyingClient(t, broker, 'refused', { subscribed: true, ending: 'kill', clean: true }, 'app/status')
  t.equal((await api(broker, 'PUT', '/v1/topics/status', { token: admin, body: { acl: { publish: ['role:admin'] } } })).status, 200)
  // aedes authorizes the will before it unregisters the client
  const gone = brokerEvent(broker, 'clientDisconnect', 'willer-refused')
  dying.kill('SIGKILL')
  await gone
  t.ok(broker.logs.some((line) => line.msg === 'will refused' && line.clientId === 'willer-refused'), 'the refusal was logged')
})

/** Starts a mosquitto client with a will on `users/alice/w/<name>`; resolves once the broker has it connected (and subscribed). */
async function startDyingClient (t: Teardown, broker: TestBroker, name: string, c: Case, willTopic = `users/alice/w/${name}`): Promise<ChildProcess> {
  const clientId = `willer-${name}`
  const common = [
    '-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', clientId, '-u', 'alice', '-P', sign({ sub: 'alice' }),
    '-k', '5', '--will-topic', willTopic, '--will-payload', name, '--will-qos', '1',
    ...(c.clean ? [] : ['-c']),
  ]
  const ready = brokerEvent(broker, c.subscribed ? 'subscribe' : 'clientReady', clientId)
  const child = c.subscribed
    ? spawn('mosquitto_sub', [...common, '-t', `users/alice/x/${name}`, '-q', '1'], { stdio: ['ignore', 'ignore', 'pipe'] })
    // -l: publishes each line of stdin, which stays open: connected and silent
    : spawn('mosquitto_pub', [...common, '-t', `users/alice/x/${name}`, '-l'], { stdio: ['pipe', 'ignore', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  await ready
  return child
}
