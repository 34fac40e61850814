import { spawn } from 'node:child_process'
import t from 'tap'
import { sign } from '../helpers/broker.js'
import type { ChildBroker } from '../helpers/child-broker.js'
import { startCluster } from '../helpers/cluster.js'
import { within } from '../helpers/within.js'
import { eventually } from '../helpers/eventually.js'

// HTTP operations on an installation whose device is connected to another
// node, with three `herald start` processes and mosquitto_sub as the device
// (issue 16). test/cluster/remote-clients.test.ts covers each operation in
// one process; this adds separate processes, a client we did not write, and a
// node that really stops (SIGSTOP): the HTTP call fails with NODE_UNREACHABLE
// after cluster.requestTimeoutMs instead of hanging, and succeeds when
// retried once the node runs again.

const alice = sign({ sub: 'alice' })
const service = sign({ sub: 'backend', role: 'service' })
const TIMEOUT_MS = 1000

interface Answer { status: number, body: any }

async function call (node: ChildBroker | undefined, method: string, path: string, token: string, body?: unknown): Promise<Answer> {
  const response = await fetch(`http://127.0.0.1:${String(node?.ports.http)}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
}

t.test('mosquitto_sub on node B: subscriptions, a push and a DELETE made over HTTP on nodes A and C reach its live connection; B stopped: NODE_UNREACHABLE', async (t) => {
  const { nodes: [a, b, c] } = await startCluster(t, { nodes: 3, env: { HERALD_CLUSTER_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) } })
  const created = await call(a, 'POST', '/v1/installations', alice, {})
  t.equal(created.status, 201)
  const id = created.body.installationId as string

  // -d: mosquitto_sub tells when it has its CONNACK and SUBACK; -v: each message as `topic payload`
  // stdbuf: mosquitto_sub's debug lines are printf()s, block-buffered on a pipe
  const sub = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(b?.ports.mqtt), '-i', id, '-c', '-q', '1', '-u', 'alice', '-P', alice, '-t', 'users/alice/inbox', '-v', '-d'])
  t.teardown(() => { sub.kill() })
  t.teardown(() => { if (!t.passing()) t.comment(output) })
  let output = ''
  sub.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  sub.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const lines = (): string[] => output.split('\n')
  const connacks = (): number => lines().filter((line) => line.includes('received CONNACK (0)')).length
  const messages = (): string[] => lines().filter((line) => line.startsWith('users/alice/'))
  // the first message not yet returned (it may have come before the HTTP call that sent it answered)
  let taken = 0
  const nextMessage = async (what: string): Promise<string> => {
    const index = taken++
    await eventually(what, () => messages().length > index, 5000)
    return messages()[index] as string
  }

  await eventually('mosquitto_sub subscribed on B', () => lines().some((line) => line.includes('received SUBACK')), 10_000)
  // node C's presence mirror knows the device is on B
  await eventually('C sees the device connected', async () => (await call(c, 'GET', `/v1/installations/${id}`, alice)).body.connected === true, 5000)

  t.equal((await call(c, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, alice)).status, 200, 'subscribed over HTTP on C')
  t.equal((await call(a, 'POST', '/v1/publish', alice, { topic: 'users/alice/news', payload: 'news 1', qos: 1 })).status, 202)
  t.equal(await nextMessage('news on the filter added over HTTP'), 'users/alice/news news 1', 'the live connection got it, no reconnect')

  const pushed = await call(c, 'POST', '/v1/push', service, { to: { installation: id }, data: { n: '1' }, mqtt: { qos: 0 } })
  t.equal(pushed.status, 202)
  const push = await nextMessage('the QoS 0 push to the installation')
  t.ok(push.startsWith(`users/alice/installations/${id} `) && push.includes(pushed.body.id as string), 'QoS 0 push to the installation delivered live')

  // node B stops (SIGSTOP): its lease still holds, its Redis connections stay open, it answers nothing
  b?.child.kill('SIGSTOP')
  let stopped = true
  t.teardown(() => { if (stopped) b?.child.kill('SIGCONT') })
  const started = Date.now()
  const refused = await within(TIMEOUT_MS + 5000, 'the PUT answers while B is stopped', call(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Falerts`, alice))
  const waited = Date.now() - started
  t.equal(refused.status, 503)
  t.equal(refused.body.error.code, 'NODE_UNREACHABLE')
  t.ok(waited >= TIMEOUT_MS, `after cluster.requestTimeoutMs (${waited} ms)`)
  b?.child.kill('SIGCONT')
  stopped = false

  // retried once B runs again: done on the live connection
  t.equal((await call(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Falerts`, alice)).status, 200, 'the retry succeeds')
  t.equal((await call(c, 'POST', '/v1/publish', alice, { topic: 'users/alice/alerts', payload: 'alert 1', qos: 1 })).status, 202)
  t.equal(await nextMessage('an alert on the filter added by the retry'), 'users/alice/alerts alert 1')
  t.equal(connacks(), 1, 'one connection so far')

  // DELETE on C closes the connection on B: mosquitto_sub connects again (as a new session)
  t.equal((await call(c, 'DELETE', `/v1/installations/${id}`, alice)).status, 204)
  await eventually('mosquitto_sub was disconnected and connected again', () => connacks() >= 2, 10_000)
  t.equal((await call(a, 'GET', `/v1/installations/${id}`, alice)).status, 404)
})
