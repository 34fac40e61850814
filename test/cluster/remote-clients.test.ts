import msgpack from 'msgpack-lite'
import t, { type Test } from 'tap'
import { acquireNodeLease } from '../../src/cluster/node-lease.js'
import { openClusterPresence } from '../../src/cluster/presence.js'
import { openRedisConnection } from '../../src/store/redis/connection.js'
import { sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { connectInbox, text, type Received } from '../helpers/mqtt-inbox.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'

// HTTP operations on an installation whose device is connected to another
// node (issue 16): two in-process Herald nodes on one redis-server, the HTTP
// call on node A, the device (mqtt.js) on node B. Node B acts on the live
// connection (cluster/remote-clients.ts); a node that does not answer makes
// the call fail with NODE_UNREACHABLE after cluster.requestTimeoutMs.

const alice = sign({ sub: 'alice' })
const service = sign({ sub: 'backend', role: 'service' })
const PREFIX = 'herald:'
const TIMEOUT_MS = 800

async function startNode (t: Test, redis: TestRedis, nodeId: string): Promise<TestBroker> {
  return await startBroker(t, { overrides: { cluster: { redis: { url: redis.url }, nodeId, requestTimeoutMs: TIMEOUT_MS } } })
}

async function createInstallation (t: Test, node: TestBroker): Promise<string> {
  const res = await api<{ installationId: string }>(node, 'POST', '/v1/installations', { token: alice, body: {} })
  t.equal(res.status, 201, 'installation created')
  return res.body.installationId
}

/** Resolves once `node` sees `clientId` connected somewhere (its presence mirror follows Redis pub/sub). */
async function seenConnected (node: TestBroker, clientId: string, connected = true): Promise<void> {
  const port = node.server.broker?.port
  if (port === undefined) throw new Error('not started')
  await within(5000, `presence of ${clientId}`, (async () => {
    while (port.isConnected(clientId) !== connected) await new Promise((resolve) => setTimeout(resolve, 5))
  })())
}

async function subscriptionsOf (node: TestBroker, id: string): Promise<string[]> {
  const res = await api<{ subscriptions: Array<{ topic: string }> }>(node, 'GET', `/v1/installations/${id}/subscriptions`, { token: alice })
  if (res.status !== 200) throw new Error(`GET subscriptions: ${res.status} ${res.text}`)
  return res.body.subscriptions.map((s) => s.topic).sort()
}

async function publish (t: Test, node: TestBroker, topic: string, payload: string, token = service): Promise<void> {
  const res = await api(node, 'POST', '/v1/publish', { token, body: { topic, payload, qos: 1 } })
  t.equal(res.status, 202, `${payload} published on ${topic}`)
}

const next = async (device: { next (): Promise<Received> }, what: string): Promise<Received> => await within(5000, what, device.next())

t.test('an HTTP subscription made on node A applies to the live connection on node B, and so does its removal', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const b = await startNode(t, redis, 'b')
  const id = await createInstallation(t, a)
  const device = await connectInbox(t, b.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: b })
  await seenConnected(a, id)

  const added = await api(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  t.equal(added.status, 200)
  await publish(t, a, 'users/alice/news', 'hello', alice)
  const got = await next(device, 'the message on the new filter, without reconnecting')
  t.equal(got.topic, 'users/alice/news')
  t.equal(text(got), 'hello')
  t.same(await subscriptionsOf(a, id), ['users/alice/inbox', 'users/alice/news'], 'stored in the session too')

  const removed = await api(a, 'DELETE', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  t.equal(removed.status, 204)
  await publish(t, a, 'users/alice/news', 'not for you', alice)
  await publish(t, a, 'users/alice/inbox', 'marker')
  t.equal(text(await next(device, 'the marker')), 'marker', 'the removal applied to the live connection')
  t.same(await subscriptionsOf(a, id), ['users/alice/inbox'])
  t.equal(device.messages.length, 2, 'one connection all along, nothing else delivered')
})

t.test('DELETE of an installation on node A closes its connection on node B', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const b = await startNode(t, redis, 'b')
  const id = await createInstallation(t, a)
  const device = await connectInbox(t, b.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: b })
  await seenConnected(a, id)

  const closed = new Promise<void>((resolve) => device.client.once('close', () => resolve()))
  const deleted = await api(a, 'DELETE', `/v1/installations/${id}`, { token: alice })
  t.equal(deleted.status, 204)
  await within(5000, 'the connection on B closes', closed)
  await seenConnected(a, id, false)
  t.equal((await api(a, 'GET', `/v1/installations/${id}`, { token: alice })).status, 404)
  t.same(await redis.client().keys(`${PREFIX}*${id}*`), [], 'nothing of its session is left in Redis')
})

t.test('a push to the installation on node A reaches its device on node B at once, at QoS 0 and 1, payload bytes intact', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const b = await startNode(t, redis, 'b')
  const id = await createInstallation(t, a)
  const device = await connectInbox(t, b.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: b })
  await seenConnected(a, id)

  for (const qos of [0, 1] as const) {
    const res = await api<{ id: string }>(a, 'POST', '/v1/push', { token: service, body: { to: { installation: id }, data: { n: String(qos) }, mqtt: { qos } } })
    t.equal(res.status, 202)
    const got = await next(device, `the QoS ${qos} push`)
    t.equal((JSON.parse(text(got)) as { id: string }).id, res.body.id, `QoS ${qos} push delivered live`)
  }

  // every byte value through the request's encoding
  const payload = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  await a.server.broker?.port.deliverTo(id, { topic: `users/alice/installations/${id}`, payload, qos: 0, retain: false })
  t.same(Buffer.compare((await next(device, 'the raw bytes')).payload, payload), 0, 'the payload arrives byte for byte')
})

/** A node in the presence that holds `clientId` and listens on its ops channel, answering as `reply` says (never, by default). */
async function ghostNode (t: Test, redis: TestRedis, clientId: string, reply?: (request: Record<string, unknown>) => Record<string, unknown>) {
  const conn = await openRedisConnection({ url: redis.url, keyPrefix: PREFIX })
  const lease = await acquireNodeLease(conn, { node: 'ghost', leaseMs: 60_000 })
  const presence = await openClusterPresence(conn, lease)
  const requests: Array<Record<string, unknown>> = []
  const listener = conn.subscriber()
  listener.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
    const request = msgpack.decode(message) as Record<string, unknown>
    requests.push(request)
    if (reply !== undefined) conn.client.publish(`${PREFIX}node:${String(request.from)}:replies`, msgpack.encode(reply(request))).catch(() => {})
  })
  await listener.subscribe(`${PREFIX}node:ghost:ops`)
  t.equal(await presence.register(clientId, 'user:alice', 'ghost:1'), undefined)
  t.teardown(async () => {
    await presence.close()
    await lease.close()
    await conn.close()
  })
  return { conn, presence, requests, stopListening: async () => { await listener.unsubscribe() } }
}

t.test('a node that holds the connection but does not answer: NODE_UNREACHABLE after cluster.requestTimeoutMs, nothing deleted', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const id = await createInstallation(t, a)
  const ghost = await ghostNode(t, redis, id)
  await seenConnected(a, id)

  const started = Date.now()
  const put = await api(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  const waited = Date.now() - started
  t.equal(put.status, 503)
  t.equal(put.body.error.code, 'NODE_UNREACHABLE')
  t.match(put.body.error.message, /cluster node ghost, which holds the connection of .*, did not answer within 800 ms/)
  t.ok(put.headers.get('retry-after'), 'with Retry-After')
  t.ok(waited >= TIMEOUT_MS && waited < TIMEOUT_MS + 2000, `answered after the timeout, not a hang (${waited} ms)`)
  t.same(ghost.requests[0], { id: ghost.requests[0]?.id, from: 'a', op: 'subscribe', clientId: id, args: { topic: 'users/alice/news', qos: 1 } }, 'the request as it travels')

  const push = await api(a, 'POST', '/v1/push', { token: service, body: { to: { installation: id }, data: { n: '1' }, mqtt: { qos: 0 } } })
  t.equal(push.status, 503)
  t.equal(push.body.error.code, 'NODE_UNREACHABLE')
  const pushed = ghost.requests[1] as { op: string, args: { payload: unknown } }
  t.equal(pushed.op, 'deliverTo')
  t.ok(Buffer.isBuffer(pushed.args.payload), 'the payload travels as bytes')

  const del = await api(a, 'DELETE', `/v1/installations/${id}`, { token: alice })
  t.equal(del.status, 503)
  t.equal(del.body.error.code, 'NODE_UNREACHABLE')
  t.equal((await api(a, 'GET', `/v1/installations/${id}`, { token: alice })).status, 200, 'the installation stays: the DELETE can be retried')
  t.same(await subscriptionsOf(a, id), ['users/alice/inbox'], 'the subscription was not stored behind the live connection\'s back')

  // the node's listener is gone (its process died; its lease has not expired yet): no wait at all
  await ghost.stopListening()
  const fast = Date.now()
  const gone = await api(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  t.equal(gone.status, 503)
  t.equal(gone.body.error.code, 'NODE_UNREACHABLE')
  t.match(gone.body.error.message, /is not listening/)
  t.ok(Date.now() - fast < TIMEOUT_MS, 'refused at once')

  // once its records leave the presence, the operations act on the stored session
  await ghost.presence.removeNode('ghost')
  await seenConnected(a, id, false)
  t.equal((await api(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })).status, 200)
  t.same(await subscriptionsOf(a, id), ['users/alice/inbox', 'users/alice/news'])
  t.equal((await api(a, 'DELETE', `/v1/installations/${id}`, { token: alice })).status, 204)
})

t.test('a node that answers "not here" (the device left meanwhile): the operation falls back to the stored session', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const id = await createInstallation(t, a)
  const ghost = await ghostNode(t, redis, id, (request) => ({ id: request.id, result: 'absent' }))
  await seenConnected(a, id)

  t.equal((await api(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })).status, 200)
  t.same(await subscriptionsOf(a, id), ['users/alice/inbox', 'users/alice/news'], 'stored, as for an offline device')
  t.equal(ghost.requests.length, 1, 'asked once')

  // a QoS 1 push goes to the queue the device drains when it connects
  const push = await api<{ id: string }>(a, 'POST', '/v1/push', { token: service, body: { to: { installation: id }, data: { n: '1' } } })
  t.equal(push.status, 202)
  await ghost.presence.removeNode('ghost')
  await seenConnected(a, id, false)
  const device = await connectInbox(t, a.mqttUrl, { clientId: id, clean: false, password: alice }, { readyOn: a })
  t.equal((JSON.parse(text(await next(device, 'the queued push'))) as { id: string }).id, push.body.id)
})

t.test('an operation that fails on the other node comes back with its error code', async (t) => {
  const redis = await startRedis(t)
  const a = await startNode(t, redis, 'a')
  const id = await createInstallation(t, a)
  await ghostNode(t, redis, id, (request) => ({ id: request.id, error: { code: 'SERVER_UNAVAILABLE', message: 'Redis (cluster.redis.url) is not reachable' } }))
  await seenConnected(a, id)
  const res = await api(a, 'PUT', `/v1/installations/${id}/subscriptions/users%2Falice%2Fnews`, { token: alice })
  t.equal(res.status, 503)
  t.same(res.body.error, { code: 'SERVER_UNAVAILABLE', message: 'Redis (cluster.redis.url) is not reachable' })
})
