import t, { type Test } from 'tap'
import { brokerEvent, connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'

// The admin endpoints in cluster mode: two in-process nodes on one
// redis-server. Any node lists every node's connections (the cluster
// presence) and disconnects a client connected to another node; queue depths
// and dead letters are the cluster's; a backup is refused (the store is Redis).

const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })

async function startNode (t: Test, redis: TestRedis, nodeId: string): Promise<TestBroker> {
  return await startBroker(t, { overrides: { cluster: { redis: { url: redis.url }, nodeId, requestTimeoutMs: 2000 } } })
}

async function clientsOn (node: TestBroker, query = ''): Promise<Array<Record<string, unknown>>> {
  const listed = await api(node, 'GET', `/v1/admin/clients${query}`, { token: admin })
  if (listed.status !== 200) throw new Error(listed.text)
  return listed.body.clients
}

/** Resolves once `node` lists `count` connections (its presence mirror follows Redis pub/sub). */
async function listed (node: TestBroker, count: number): Promise<Array<Record<string, unknown>>> {
  return await within(5000, `${count} connections listed`, (async () => {
    for (;;) {
      const clients = await clientsOn(node)
      if (clients.length === count) return clients
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })())
}

t.test('any node lists every node\'s connections and disconnects a client connected to another node', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const b = await startNode(t, redis, 'b')
  await connect(t, a.mqttUrl, { clientId: 'alice-on-a', password: alice })
  const onB = await connect(t, b.mqttUrl, { clientId: 'alice-on-b', clean: false, password: alice })
  await onB.subscribeAsync('users/alice/news', { qos: 1 })
  await connect(t, b.mqttUrl, { clientId: 'bob-on-b', password: bob })

  const all = await listed(a, 3)
  t.match(all, [
    { clientId: 'alice-on-a', user: 'alice', node: 'a', transport: 'tcp', address: '127.0.0.1' },
    { clientId: 'alice-on-b', user: 'alice', node: 'b', transport: null, address: null, connectedAt: null },
    { clientId: 'bob-on-b', user: 'bob', node: 'b' },
  ], 'this node\'s connections in full, the others\' as the presence knows them')
  t.same((await clientsOn(a, '?user=alice')).map((c) => c.clientId), ['alice-on-a', 'alice-on-b'])
  t.match((await api(a, 'GET', '/v1/admin/clients/alice-on-b', { token: admin })).body, { connected: true, connection: { node: 'b' }, session: { subscriptions: [{ topic: 'users/alice/news' }] } })

  const closed = new Promise<void>((resolve) => onB.once('close', () => resolve()))
  const gone = brokerEvent(b, 'clientDisconnect', 'alice-on-b')
  t.equal((await api(a, 'DELETE', '/v1/admin/clients/alice-on-b/connection', { token: admin })).status, 204, 'asked on node a')
  await closed
  await gone
  t.pass('node b closed the connection')
  await listed(a, 2)
  t.match((await api(a, 'GET', '/v1/admin/clients/alice-on-b', { token: admin })).body, { connected: false, session: { subscriptions: [{ topic: 'users/alice/news' }] } }, 'the session stays')

  // its queue is in Redis: node a counts what a publish on node b queued
  t.equal((await api(b, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/news', payload: 'x', qos: 1 } })).status, 202)
  t.match((await api(a, 'GET', '/v1/admin/clients/alice-on-b', { token: admin })).body, { session: { queuedMessages: 1 } })
  t.match((await api(a, 'GET', '/v1/admin/overview', { token: admin })).body, { node: 'a', clients: { connected: 2 }, queues: { sessions: 1, messages: 1 } })
})

t.test('a backup is refused in cluster mode: Redis has its own', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const refused = await api(a, 'POST', '/v1/admin/backup', { token: admin, body: { dir: '/tmp/herald-never-written' } })
  t.equal(refused.status, 501)
  t.equal(refused.body.error.code, 'NOT_SUPPORTED')
  t.match(refused.body.error.message, /Redis/)
})

t.test('/readyz fails while Redis refuses writes (out of memory), though the connection is up', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const ready = async (): Promise<{ status: number, code?: string }> => {
    const response = await api(a, 'GET', '/readyz')
    return { status: response.status, code: response.body?.error?.code }
  }
  t.same(await ready(), { status: 200, code: undefined })
  const admin = redis.client()
  await admin.config('SET', 'maxmemory', '1')
  t.teardown(async () => { await admin.config('SET', 'maxmemory', '0') })
  const refused = await within(5000, '/readyz refuses', (async () => {
    for (;;) {
      const answer = await ready()
      if (answer.status !== 200) return answer
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })())
  t.same(refused, { status: 503, code: 'SERVER_UNAVAILABLE' })
  await admin.config('SET', 'maxmemory', '0')
  await within(5000, '/readyz ready again', (async () => {
    while ((await ready()).status !== 200) await new Promise((resolve) => setTimeout(resolve, 50))
  })())
  t.pass('ready again once Redis takes writes')
})
