import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { BucketLimits, BucketScope } from '../../src/buckets/index.js'
import type { HeraldError } from '../../src/errors/index.js'
import { openRedisBucketStore, type RedisBucketStore } from '../../src/store/redis/buckets.js'
import type { RedisConnection } from '../../src/store/redis/connection.js'
import { Recorder, rejectsWith } from '../helpers/buckets.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { freshPrefix, nodeConnection } from '../helpers/store-backends.js'
import { within } from '../helpers/within.js'

// The Redis bucket store with several nodes on one Redis: each node is a
// store on its own connection, as each Herald process has. Races between
// nodes have one winner, every successful write has exactly one event
// (also when its node dies before publishing it), and every node's app
// bucket directory follows the others'. The single-node contract:
// test/contracts/bucket-store.test.ts.

const logger = pino({ level: 'silent' })
const limits: BucketLimits = { maxObjectBytes: 4096, eventBodyLimitBytes: 256 }
const ops: BucketScope = { kind: 'group', id: 'ops' }
const app: BucketScope = { kind: 'app' }
const as = (sender: string) => ({ sender })

interface Node {
  readonly store: RedisBucketStore
  readonly conn: RedisConnection
  readonly broker: Recorder
}

async function node (t: Test, redis: TestRedis, keyPrefix: string, name: string, options: { leaseMs?: number, broker?: Recorder, start?: boolean } = {}): Promise<Node> {
  const conn = await nodeConnection(t, redis, keyPrefix)
  const store = await openRedisBucketStore(conn, limits, { node: name, leaseMs: options.leaseMs ?? 600_000 })
  const broker = options.broker ?? new Recorder()
  // teardowns run last first: the store stops before its connection closes
  t.teardown(async () => await store.stop())
  if (options.start !== false) await store.start(broker, logger)
  return { store, conn, broker }
}

const fulfilled = (results: Array<PromiseSettledResult<unknown>>): number => results.filter((r) => r.status === 'fulfilled').length
const refused = (results: Array<PromiseSettledResult<unknown>>, code: string): number =>
  results.filter((r) => r.status === 'rejected' && (r.reason as HeraldError).code === code).length

let redis: TestRedis
t.before(async () => { redis = await startRedis(t) })

t.test('If-Match race across two nodes: of 20 writers of version 1, exactly one wins', async (t) => {
  const prefix = freshPrefix()
  const [a, b] = [await node(t, redis, prefix, 'a'), await node(t, redis, prefix, 'b')]
  await a.store.createObject(ops, 'tasks', 'hot', { n: 0 }, as('dave'))
  t.equal((await b.store.getObject(ops, 'tasks', 'hot'))?.version, 1, 'the other node reads it')

  const puts = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) =>
    await (i % 2 === 0 ? a : b).store.putObject(ops, 'tasks', 'hot', { n: i }, { sender: 'dave', ifMatch: 1 })))
  t.equal(fulfilled(puts), 1, 'one PUT wins')
  t.equal(refused(puts, 'PRECONDITION_FAILED'), 19, 'the others: 412')

  const patches = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) =>
    await (i % 2 === 0 ? b : a).store.patchObject(ops, 'tasks', 'hot', { [`k${i}`]: i }, { sender: 'dave', ifMatch: 2 })))
  t.equal(fulfilled(patches), 1, 'one PATCH wins')
  t.equal(refused(patches, 'PRECONDITION_FAILED'), 19)

  const creates = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) =>
    await (i % 2 === 0 ? a : b).store.putObject(ops, 'tasks', 'new', { i }, { sender: 'dave', ifNoneMatch: '*' })))
  t.equal(fulfilled(creates), 1, 'one If-None-Match: * creates')
  t.equal(refused(creates, 'ALREADY_EXISTS'), 19)

  t.equal((await a.store.getObject(ops, 'tasks', 'hot'))?.version, 3)
  const events = [...a.broker.events, ...b.broker.events]
  t.equal(events.length, 4, 'one event per successful write: create, PUT, PATCH, create')
  t.strictSame(events.filter((e) => e.objectId === 'hot').map((e) => e.version).sort(), [1, 2, 3])
  t.equal(await a.store.pendingEvents(), 0)
})

t.test('concurrent writes on two nodes: consecutive versions, exactly one event per successful write', async (t) => {
  const prefix = freshPrefix()
  const [a, b] = [await node(t, redis, prefix, 'a'), await node(t, redis, prefix, 'b')]
  const ids = ['o1', 'o2', 'o3']
  const writes = await Promise.allSettled(Array.from({ length: 90 }, async (_, i) => {
    const { store } = i % 2 === 0 ? a : b
    const id = ids[i % 3] as string
    if (i % 5 === 0) return await store.patchObject(ops, 'load', id, { [`k${i}`]: i }, as('dave'))
    return (await store.putObject(ops, 'load', id, { n: i }, as('dave'))).object
  }))
  const ok = fulfilled(writes)
  // a PATCH that comes before the object's first PUT finds nothing: NOT_FOUND, no event
  t.equal(ok + refused(writes, 'NOT_FOUND'), 90, 'every write either happened or found no object')
  const events = [...a.broker.events, ...b.broker.events]
  t.equal(events.length, ok, 'as many events as successful writes')
  t.equal(new Set(events.map((e) => e.eventId)).size, ok, 'no event twice')
  for (const id of ids) {
    const versions = events.filter((e) => e.objectId === id).map((e) => e.version as number).sort((x, y) => x - y)
    const object = await b.store.getObject(ops, 'load', id)
    t.strictSame(versions, Array.from({ length: object?.version ?? 0 }, (_, i) => i + 1), `${id}: each version once, none lost`)
  }
  const page = await a.store.listObjects(ops, 'load', { limit: 10 })
  t.strictSame(page.objects.map((o) => o.id), ids, 'both nodes wrote into one bucket')
  t.equal(await a.store.pendingEvents(), 0)

  // a bucket delete on one node drops what the other wrote
  t.equal(await b.store.deleteBucket(ops, 'load', as('dave')), 3)
  t.strictSame((await a.store.listObjects(ops, 'load', { limit: 10 })).objects, [])
})

/** Node `a` writes, and its publishes hang: it dies there, between the writes and their publish. */
async function dyingWriter (t: Test, prefix: string, count: number): Promise<{ ids: string[], a: Node }> {
  let release: (err: Error) => void = () => {}
  const held = new Promise<never>((_resolve, reject) => { release = reject })
  held.catch(() => {})
  const a = await node(t, redis, prefix, 'a')
  // teardowns run last first: this one before the node's, which waits for its publishes
  t.teardown(() => release(new Error('node a was killed')))
  let publishing = 0
  let allStored: () => void = () => {}
  const stored = new Promise<void>((resolve) => { allStored = resolve })
  // a publish starts once its write's script has answered: the write and its pending event are in Redis
  a.broker.onPublish = async () => {
    if (++publishing === count) allStored()
    await held
  }
  const ids = Array.from({ length: count }, (_, i) => `w${i}`)
  for (const id of ids) a.store.putObject(ops, 'crash', id, { id }, as('dave')).catch(() => {})
  await within(5000, 'the writes stored', stored)
  // the node is gone: no lease renewed, no publish, no answer
  await a.conn.close()
  return { ids, a }
}

t.test('a node dies between its writes and their publish: another takes its events over, each published once', async (t) => {
  const prefix = freshPrefix()
  const { ids } = await dyingWriter(t, prefix, 5)
  t.equal(await redis.client().xlen(`${prefix}buckets:pending:a`), 5, 'the events wait in the dead node\'s stream')

  // b and c, whose sweeps do not run in this test, race for the take-over
  const cluster = new Recorder()
  const [b, c] = [await node(t, redis, prefix, 'b', { broker: cluster }), await node(t, redis, prefix, 'c', { broker: cluster })]
  t.equal(await b.store.takeOver('a'), 0, 'nothing is taken while the lease holds')
  await redis.client().del(`${prefix}buckets:lease:a`)
  const taken = await Promise.all([b.store.takeOver('a'), c.store.takeOver('a'), c.store.takeOver('a'), b.store.takeOver('a')])
  t.equal(taken.reduce((sum, n) => sum + n, 0), 5, 'five events taken, by whichever node came first')
  t.equal(cluster.messages.length, 5, 'and published once each')
  t.strictSame(cluster.events.map((e) => e.objectId).sort(), ids)
  t.equal(new Set(cluster.events.map((e) => e.eventId)).size, 5)
  t.equal(await b.store.pendingEvents(), 0, 'nothing left pending anywhere')
  t.equal(await redis.client().sismember(`${prefix}buckets:nodes`, 'a'), 0, 'the dead node is forgotten')
})

t.test('the sweep takes a dead node\'s events over by itself once its lease expires', async (t) => {
  const prefix = freshPrefix()
  const { a } = await dyingWriter(t, prefix, 3)
  const cluster = new Recorder()
  // a's lease is 10 minutes: say it expires now by giving it a short one
  await redis.client().pexpire(`${prefix}buckets:lease:a`, 200)
  await node(t, redis, prefix, 'b', { broker: cluster, leaseMs: 300 })
  await node(t, redis, prefix, 'c', { broker: cluster, leaseMs: 300 })
  await within(10_000, 'the dead node\'s events', cluster.waitFor(3))
  t.equal(cluster.messages.length, 3)
  t.equal(a.broker.messages.length, 0, 'the dead node published nothing')
  t.equal(new Set(cluster.events.map((e) => e.eventId)).size, 3)
})

t.test('a failed publish on a live node is tried again by its own sweep', async (t) => {
  const prefix = freshPrefix()
  const a = await node(t, redis, prefix, 'a', { leaseMs: 300 })
  a.broker.fail = new Error('broker down')
  await t.rejects(a.store.createObject(ops, 'retry', 'x', {}, as('dave')), /broker down/, 'the write stands, the call says the publish failed')
  t.equal((await a.store.getObject(ops, 'retry', 'x'))?.version, 1)
  a.broker.fail = undefined
  await within(10_000, 'the retried event', a.broker.waitFor(1))
  t.match(a.broker.events, [{ type: 'DATA_OBJECT_CREATED', objectId: 'x' }])
  t.equal(await a.store.pendingEvents(), 0)
})

t.test('app buckets: every node\'s directory follows the others\' changes', async (t) => {
  const prefix = freshPrefix()
  const [a, b] = [await node(t, redis, prefix, 'a'), await node(t, redis, prefix, 'b')]
  // a write of b resolves once b's mirror has it, and changes apply in order: a's earlier change is there too
  const barrier = async (n: number): Promise<void> => { await b.store.putAppBucket(`barrier${n}`, { read: [], write: [] }) }

  await a.store.putAppBucket('news', { read: ['authenticated'], write: ['role:service'] })
  await barrier(1)
  t.strictSame(b.store.getAppBucket('news')?.acl, { read: ['authenticated'], write: ['role:service'] }, 'created on a, seen by b')
  t.equal(await b.store.putAppBucket('news', { read: [], write: [] }, { onlyIfAbsent: true }), undefined, 'If-None-Match: * on b sees a\'s bucket')

  await a.store.putAppBucket('news', { read: ['group:ops'], write: ['role:admin'] })
  await barrier(2)
  t.strictSame(b.store.bucketAcl('news'), { read: ['group:ops'], write: ['role:admin'] }, 'an ACL replaced on a')
  await b.store.createObject(app, 'news', 'n1', { headline: 'x' }, as('backend'))

  t.equal(await a.store.deleteBucket(app, 'news', as('root')), 1, 'a drops what b wrote')
  await barrier(3)
  t.equal(b.store.getAppBucket('news'), undefined, 'deleted on a, gone on b')
  t.strictSame(b.store.bucketAcl('news'), { read: ['group:ops'], write: ['role:admin'] }, 'its ACL stays for the queued BUCKET_DELETED')
  await rejectsWith(t, b.store.createObject(app, 'news', 'n2', {}, as('backend')), 'NOT_FOUND', 'no writes into it on b')
  t.strictSame(b.store.listAppBuckets().map((x) => x.name), ['barrier1', 'barrier2', 'barrier3'])
})

t.test('app buckets: Redis decides, not a mirror that lags; a reconnected mirror reloads', async (t) => {
  const prefix = freshPrefix()
  const [a, b] = [await node(t, redis, prefix, 'a'), await node(t, redis, prefix, 'b')]
  await a.store.putAppBucket('news', { read: ['authenticated'], write: ['role:service'] })
  await b.store.putAppBucket('barrier', { read: [], write: [] })

  // the bucket is deleted and b never hears of it (its message lost)
  const raw = redis.client()
  const deleted = { ...a.store.getAppBucket('news'), deletedAt: new Date().toISOString() }
  await raw.hset(`${prefix}buckets:app`, 'news', JSON.stringify(deleted))
  await raw.incr(`${prefix}buckets:app-seq`)
  t.ok(b.store.getAppBucket('news'), 'b\'s mirror still has it')
  await rejectsWith(t, b.store.createObject(app, 'news', 'x', {}, as('backend')), 'NOT_FOUND', 'the write script checks the bucket in Redis')
  t.equal(await b.store.getObject(app, 'news', 'x'), undefined, 'nothing written')
  t.equal(b.broker.messages.length, 0, 'no event')

  // b's subscription drops and comes back: it reloads the whole directory
  const reloaded = b.store.directory.nextLoad()
  await raw.client('KILL', 'TYPE', 'pubsub')
  await within(10_000, 'the reload after the reconnect', reloaded)
  t.equal(b.store.getAppBucket('news'), undefined, 'the reload brought the deletion')
  t.ok(b.store.bucketAcl('news'), 'as a tombstone')
})

t.test('Redis unreachable: reads and writes fail with SERVER_UNAVAILABLE', async (t) => {
  const own = await startRedis(t)
  const a = await node(t, own, freshPrefix(), 'a')
  await a.store.createObject(ops, 'b', 'x', {}, as('dave'))
  await own.stop({ kill: true })
  await rejectsWith(t, a.store.putObject(ops, 'b', 'x', { n: 1 }, as('dave')), 'SERVER_UNAVAILABLE', 'a write')
  await rejectsWith(t, a.store.getObject(ops, 'b', 'x'), 'SERVER_UNAVAILABLE', 'a read')
  t.equal(a.broker.messages.length, 1, 'no event for the write that did not happen')
})
