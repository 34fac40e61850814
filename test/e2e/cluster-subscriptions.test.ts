import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connect, makeTempDir, sign, type Teardown } from '../helpers/broker.js'
import type { ChildBroker } from '../helpers/child-broker.js'
import { startCluster } from '../helpers/cluster.js'
import { connectInbox, text, type Inbox } from '../helpers/mqtt-inbox.js'
import { copiesOf, expectedQos, overlapCases, type OverlapCase as Case, type QoS } from '../helpers/overlap-cases.js'
import { within } from '../helpers/within.js'

// Issue 16 in cluster mode, three `herald start` processes on one
// redis-server, with clients we did not write (mosquitto_pub/sub) beside
// mqtt.js: a will of a client that also subscribed is published once, and
// overlapping subscriptions on one node get what they get on a single node
// (test/e2e/overlapping-subscriptions.test.ts) from a publisher on another.

const run = promisify(execFile)
const port = (node: ChildBroker | undefined): string => String(node?.ports.mqtt)
const url = (node: ChildBroker | undefined): string => `mqtt://127.0.0.1:${port(node)}`
const service = sign({ sub: 'svc', role: 'service' })
const alice = sign({ sub: 'alice' })

async function mosquittoPub (node: ChildBroker | undefined, topic: string, message: string, qos: 0 | 1 | 2): Promise<void> {
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port(node), '-u', 'svc', '-P', service, '-t', topic, '-m', message, '-q', String(qos)])
}

/** A cluster of three whose CONNECT rate limit (counted across nodes) lets every client of these tests in: they all come from 127.0.0.1. */
async function startThree (t: Teardown): Promise<ChildBroker[]> {
  const configFile = join(await makeTempDir(t), 'herald.json')
  await writeFile(configFile, JSON.stringify({ limits: { connectRatePerIp: { points: 10_000, windowSec: 1 } } }))
  const { nodes } = await startCluster(t, { nodes: 3, env: { HERALD_CONFIG: configFile } })
  return nodes
}

/** A mosquitto_sub child (`-v`: each line is `topic payload`), its lines as they come. */
interface MosquittoSub {
  readonly child: ChildProcess
  readonly lines: string[]
  /** Resolves once a line equals `line`; rejects if the process exits first. */
  waitFor (line: string): Promise<void>
}

function mosquittoSub (t: Teardown, node: ChildBroker | undefined, args: string[]): MosquittoSub {
  const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', port(node), '-v', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const lines: string[] = []
  const waiters = new Set<{ line: string, resolve: () => void }>()
  let exited: Error | undefined
  const failed = new Set<(err: Error) => void>()
  let partial = ''
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdout?.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) {
      lines.push(line)
      for (const waiter of waiters) if (waiter.line === line) { waiters.delete(waiter); waiter.resolve() }
    }
  })
  child.once('exit', (code, signal) => {
    exited = new Error(`mosquitto_sub exited (${signal ?? code}): ${stderr.trim()}`)
    for (const fail of failed) fail(exited)
  })
  return {
    child,
    lines,
    async waitFor (line) {
      if (lines.includes(line)) return
      if (exited !== undefined) throw exited
      await new Promise<void>((resolve, reject) => {
        waiters.add({ line, resolve })
        failed.add(reject)
      })
    },
  }
}

/** How many messages with this payload an mqtt.js inbox has. */
const copies = (inbox: Inbox, payload: string): number => inbox.messages.filter((m) => text(m) === payload).length

/** Resolves once the inbox has a message with this payload. */
async function arrived (inbox: Inbox, payload: string): Promise<void> {
  while (copies(inbox, payload) === 0) await inbox.waitFor(inbox.messages.length + 1)
}

t.test('the will of a client that also subscribed is published once, and reaches subscribers on the two other nodes', async (t) => {
  const [a, b, c] = await startThree(t)
  // the watchers: mosquitto_sub on node B, mqtt.js on node C, both on every will of alice's clients
  const onB = mosquittoSub(t, b, ['-i', 'alice-watch-b', '-u', 'alice', '-P', alice, '-t', 'users/alice/w/#', '-q', '1'])
  const onC = await connectInbox(t, url(c), { clientId: 'alice-watch-c', username: 'alice', password: alice })
  await onC.client.subscribeAsync('users/alice/w/#', { qos: 1 })
  // mosquitto_sub says nothing once subscribed: a message published on node A until it has one
  await within(10_000, 'the watcher on B is subscribed', (async () => {
    for (let n = 0; !onB.lines.some((line) => line.startsWith('users/alice/w/probe ')); n++) {
      await mosquittoPub(a, 'users/alice/w/probe', `probe ${n}`, 1)
      await within(300, 'probe', onB.waitFor(`users/alice/w/probe probe ${n}`)).catch(() => {})
    }
  })())

  const dying: Array<{ name: string, kill: () => Promise<void> }> = [
    {
      // mqtt.js with a persistent session, subscribed to its own will topic among others: its socket is destroyed
      name: 'mqttjs',
      kill: async () => {
        const w = await connect(t, url(a), {
          clientId: 'alice-w-mqttjs', username: 'alice', password: alice, clean: false, reconnectPeriod: 0,
          will: { topic: 'users/alice/w/mqttjs', payload: Buffer.from('mqttjs gone'), qos: 1, retain: false },
        })
        await w.subscribeAsync({ 'users/alice/w/#': { qos: 1 }, 'users/alice/inbox': { qos: 1 }, 'users/alice/w/mqttjs': { qos: 0 } })
        w.stream.destroy()
      },
    },
    {
      // mosquitto_sub with --will-*, persistent, subscribed to two filters that match its will: killed
      name: 'mosquitto',
      kill: async () => {
        const w = mosquittoSub(t, a, [
          '-i', 'alice-w-mosquitto', '-c', '-u', 'alice', '-P', alice, '-k', '30',
          '--will-topic', 'users/alice/w/mosquitto', '--will-payload', 'mosquitto gone', '--will-qos', '1',
          '-t', 'users/alice/w/#', '-t', 'users/alice/w/+', '-t', 'users/alice/inbox', '-q', '1',
        ])
        await within(10_000, 'the dying mosquitto_sub is subscribed', (async () => {
          for (let n = 0; !w.lines.some((line) => line.startsWith('users/alice/w/probe-w ')); n++) {
            await mosquittoPub(a, 'users/alice/w/probe-w', `probe ${n}`, 1)
            await within(300, 'probe', w.waitFor(`users/alice/w/probe-w probe ${n}`)).catch(() => {})
          }
        })())
        w.child.kill('SIGKILL')
      },
    },
  ]

  for (const { name, kill } of dying) {
    const will = `${name} gone`
    await kill()
    await within(15_000, `${name}: the will on B`, onB.waitFor(`users/alice/w/${name} ${will}`))
    await within(15_000, `${name}: the will on C`, arrived(onC, will))
    // published on node A after the will: a second copy of the will would come before it on both watchers
    const marker = `after ${name}`
    await mosquittoPub(a, 'users/alice/w/marker', marker, 1)
    await within(10_000, 'the marker on B', onB.waitFor(`users/alice/w/marker ${marker}`))
    await within(10_000, 'the marker on C', arrived(onC, marker))
    t.equal(onB.lines.filter((line) => line === `users/alice/w/${name} ${will}`).length, 1, `${name}: one copy of the will on node B (mosquitto_sub)`)
    t.equal(copies(onC, will), 1, `${name}: one copy of the will on node C (mqtt.js)`)
  }

  // the dead clients' persistent sessions, subscribed to their own will topics, queued their will once too
  for (const { name } of dying) {
    const back = await connectInbox(t, url(c), { clientId: `alice-w-${name}`, username: 'alice', password: alice, clean: false })
    t.ok(back.connack.sessionPresent, `${name}: the session is there on node C`)
    const marker = `back ${name}`
    await mosquittoPub(a, 'users/alice/w/marker', marker, 1)
    await within(10_000, `${name}: its queue, then the marker`, arrived(back, marker))
    t.equal(copies(back, `${name} gone`), 1, `${name}: its own will, once, from its queue`)
  }
})

const levels: QoS[] = [0, 1, 2]

// the cases of the single-node test (test/e2e/overlapping-subscriptions.test.ts), with filters at three levels
const cases = overlapCases()
for (const published of levels) {
  cases.push({ name: `exact at 2, + at 0, # at 1, published at ${published}`, filters: [['t', 2], ['+', 0], ['#', 1]], published, clean: true })
}
for (const published of [1, 2] as const) {
  cases.push({ name: `persistent: exact at 1, + at 2, # at 0, published at ${published}`, filters: [['t', 1], ['+', 2], ['#', 0]], published, clean: false })
}

t.test('overlapping subscriptions on node B get one copy at the QoS a single node gives, of messages mosquitto_pub publishes on node A', async (t) => {
  const [a, b] = await startThree(t)
  // a few at a time: each case spawns two mosquitto_pub
  const batch = 8
  for (let first = 0; first < cases.length; first += batch) {
    await Promise.all(cases.slice(first, first + batch).map(async (c, i) => {
      const user = `u${first + i}`
      const subscriber = await subscribe(t, b, user, c)
      const got = await copiesOf(subscriber, `users/${user}/ov`, async () => {
        await mosquittoPub(a, `users/${user}/ov/t`, 'message', c.published)
      }, async (topic) => { await mosquittoPub(a, topic, 'marker', 1) })
      t.same(got, [expectedQos(c)], `${c.name}: one copy at QoS ${expectedQos(c)}`)
    }))
  }
})

t.test('a persistent session with overlapping filters on one node, offline: a message published on another is queued once, at the highest granted QoS', async (t) => {
  const [a, b, c] = await startThree(t)
  const device = { clientId: 'sub-olivia', username: 'olivia', password: sign({ sub: 'olivia' }), clean: false }
  const first = await connect(t, url(b), device)
  for (const [filter, qos] of [['users/olivia/ov/#', 1], ['users/olivia/ov/+', 2], ['users/olivia/ov/t', 0]] as const) {
    await first.subscribeAsync(filter, { qos })
  }
  await first.endAsync()
  await mosquittoPub(a, 'users/olivia/ov/t', 'queued', 2)
  await mosquittoPub(a, 'users/olivia/ov/t', 'marker', 1)
  // drained on a third node
  const { stdout } = await within(15_000, 'mosquitto_sub drains the queue on node C', run('mosquitto_sub', [
    '-h', '127.0.0.1', '-p', port(c), '-i', 'sub-olivia', '-c', '-u', 'olivia', '-P', sign({ sub: 'olivia' }),
    '-t', 'users/olivia/ov/#', '-q', '1', '-C', '2', '-W', '10', '-F', '%p at %q',
  ]))
  // mosquitto_sub prints a QoS 2 message once its PUBREL has come: the QoS 1 marker may come first
  t.same(stdout.trim().split('\n').sort(), ['marker at 1', 'queued at 2'], 'each message once, the queued one at the QoS of the + filter')
})

/** A client of `user` on `node` subscribed to each of the case's filters under `users/<user>/ov/`, and to the marker. */
async function subscribe (t: Teardown, node: ChildBroker | undefined, user: string, c: Case): Promise<MqttClient> {
  const client = await connect(t, url(node), { clientId: `sub-${user}`, username: user, clean: c.clean, password: sign({ sub: user }) })
  for (const [suffix, qos] of c.filters) {
    const granted = await client.subscribeAsync(`users/${user}/ov/${suffix}`, { qos })
    if (granted[0]?.qos !== qos) throw new Error(`subscription ${suffix} at ${qos} was granted ${granted[0]?.qos}`)
  }
  // the marker at QoS 1: a copy of the message written to a persistent session waits for its in-flight
  // write in Redis, and the marker's waits behind it on the same connection, so it cannot overtake
  await client.subscribeAsync(`users/${user}/ov/marker`, { qos: 1 })
  return client
}
