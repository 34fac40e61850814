import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { connect, sign } from '../helpers/broker.js'
import type { ChildBroker } from '../helpers/child-broker.js'
import { startCluster } from '../helpers/cluster.js'
import { connectInbox, text } from '../helpers/mqtt-inbox.js'
import { within } from '../helpers/within.js'

// Three `herald start` processes on one redis-server: the end-to-end checks of
// issue 16 with clients we did not write (mosquitto_pub/sub) next to mqtt.js.

const run = promisify(execFile)
const port = (node: ChildBroker | undefined): string => String(node?.ports.mqtt)
const url = (node: ChildBroker | undefined): string => `mqtt://127.0.0.1:${port(node)}`
const service = sign({ sub: 'svc', role: 'service' })

async function mosquittoPub (node: ChildBroker | undefined, topic: string, message: string, qos: 0 | 1): Promise<void> {
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port(node), '-u', 'svc', '-P', service, '-t', topic, '-m', message, '-q', String(qos)])
}

t.test('a message published on one node reaches subscribers on the two others, at QoS 0 and 1', async (t) => {
  const { nodes: [a, b, c] } = await startCluster(t, { nodes: 3 })
  const onB = await connectInbox(t, url(b), { clientId: 'bob-b', username: 'bob', password: sign({ sub: 'bob' }) })
  const onC = await connectInbox(t, url(c), { clientId: 'bob-c', username: 'bob', password: sign({ sub: 'bob' }) })
  await onB.client.subscribeAsync('users/bob/#', { qos: 1 })
  await onC.client.subscribeAsync('users/bob/#', { qos: 1 })

  await mosquittoPub(a, 'users/bob/inbox', 'qos0 from a', 0)
  await mosquittoPub(a, 'users/bob/inbox', 'qos1 from a', 1)
  for (const inbox of [onB, onC]) {
    await within(5000, 'two messages', inbox.waitFor(2))
    t.same(inbox.messages.map(text).sort(), ['qos0 from a', 'qos1 from a'])
  }
})

t.test('a persistent session queued while offline on one node is drained by mosquitto_sub on another', async (t) => {
  const { nodes: [a, b, c] } = await startCluster(t, { nodes: 3 })
  const device = { clientId: 'carol-phone', username: 'carol', password: sign({ sub: 'carol' }), clean: false }
  const first = await connect(t, url(a), device)
  await first.subscribeAsync('users/carol/inbox', { qos: 1 })
  await first.endAsync()

  for (let i = 1; i <= 5; i++) await mosquittoPub(c, 'users/carol/inbox', `queued ${i}`, 1)

  const { stdout } = await within(10_000, 'mosquitto_sub drains the queue', run('mosquitto_sub', [
    '-h', '127.0.0.1', '-p', port(b), '-i', 'carol-phone', '-c', '-q', '1', '-u', 'carol', '-P', sign({ sub: 'carol' }),
    '-t', 'users/carol/inbox', '-C', '5', '-W', '8',
  ]))
  t.same(stdout.trim().split('\n'), ['queued 1', 'queued 2', 'queued 3', 'queued 4', 'queued 5'], 'all five, in order, on node B')
})

t.test('takeover: a device moving from node A to node B while QoS 1 messages flow loses none that were acknowledged', async (t) => {
  const { nodes: [a, b, c] } = await startCluster(t, { nodes: 3 })
  const device = { clientId: 'dave-phone', username: 'dave', password: sign({ sub: 'dave' }), clean: false }
  const seen = new Set<string>()
  const record = (_topic: string, payload: Buffer): void => { seen.add(payload.toString()) }
  const onA = await connect(t, url(a), device, record)
  await onA.subscribeAsync('users/dave/inbox', { qos: 1 })

  const publisher = await connect(t, url(c), { clientId: 'svc-pub', username: 'svc', password: service })
  const total = 300
  const acknowledged: string[] = []
  const publishing = (async () => {
    for (let i = 0; i < total; i++) {
      await publisher.publishAsync('users/dave/inbox', `m${i}`, { qos: 1 })
      acknowledged.push(`m${i}`)
    }
  })()
  // mid-stream, the same device connects to node B: node A must close its old connection
  await within(10_000, 'some messages on A first', new Promise<void>((resolve) => {
    const check = (): void => { if (seen.size >= 30) { onA.removeListener('message', check); resolve() } }
    onA.on('message', check)
  }))
  const closedOnA = new Promise<void>((resolve) => onA.once('close', () => resolve()))
  const onB = await connect(t, url(b), device, record)
  await within(10_000, 'node A closes the old connection', closedOnA)
  await publishing
  const marker = 'done'
  await publisher.publishAsync('users/dave/inbox', marker, { qos: 1 })
  await within(15_000, 'the marker after everything', new Promise<void>((resolve) => {
    if (seen.has(marker)) return resolve()
    onB.on('message', (_topic, payload) => { if (payload.toString() === marker) resolve() })
  }))
  const lost = acknowledged.filter((id) => !seen.has(id))
  t.equal(acknowledged.length, total, 'every publish was acknowledged')
  t.same(lost, [], 'no acknowledged message lost')
  onA.end(true)
})

t.test('two devices of different users racing for one client id on two nodes: exactly one is let in', async (t) => {
  const { nodes: [a, b] } = await startCluster(t, { nodes: 2 })
  for (let round = 0; round < 5; round++) {
    const clientId = `contested-${round}`
    // both stay connected if let in (closed at teardown), so the loser cannot come in after the winner left
    const codeOf = async (node: ChildBroker | undefined, user: string): Promise<unknown> =>
      await connect(t, url(node), { clientId, username: user, password: sign({ sub: user }), clean: true }).then(() => 0, (err: { code?: unknown }) => err.code)
    const codes = await Promise.all([codeOf(a, 'erin'), codeOf(b, 'frank')])
    t.same(codes.slice().sort(), [0, 5], `round ${round}: one CONNACK 0, one CONNACK 5 (client id taken)`)
  }
})

t.test('mosquitto_sub on node B sees a message published over HTTP on node A', async (t) => {
  const { nodes: [a, b] } = await startCluster(t, { nodes: 2 })
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', port(b), '-i', 'gina-tool', '-u', 'gina', '-P', sign({ sub: 'gina' }), '-t', 'users/gina/#', '-q', '1', '-C', '1', '-v'])
  t.teardown(() => { sub.kill() })
  let output = ''
  sub.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => sub.once('close', (code) => resolve(code)))
  // mosquitto_sub says nothing when subscribed: publish until it has one (each publish is a real HTTP call)
  const http = `http://127.0.0.1:${String(a?.ports.http)}`
  const state = { done: false }
  void exited.then(() => { state.done = true })
  const statuses = new Set<number>()
  while (!state.done) {
    const response = await fetch(`${http}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' },
      body: JSON.stringify({ topic: 'users/gina/inbox', payload: 'over http on a', qos: 1 }),
    })
    statuses.add(response.status)
    await within(500, 'mosquitto_sub', exited).catch(() => {})
  }
  t.same([...statuses], [202], 'every publish accepted')
  t.equal(await exited, 0)
  t.equal(output.trim(), 'users/gina/inbox over http on a')
})
