import t, { type Test } from 'tap'
import { pino } from 'pino'
import type { BucketLimits, BucketScope, BucketStore } from '../../src/buckets/index.js'
import { openBucketStore } from '../../src/buckets/level-store.js'
import type { HeraldError } from '../../src/errors/index.js'
import { openRedisBucketStore } from '../../src/store/redis/buckets.js'
import { Recorder, rejectsWith } from '../helpers/buckets.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { freshPrefix, nodeConnection, tempDatabase } from '../helpers/store-backends.js'

// The bucket store's contract (src/buckets/store.ts), run against every
// implementation: LevelDB (a temp dir) and Redis (its own redis-server, one
// key prefix per test). Cross-node behaviour of the Redis store:
// test/cluster/buckets.test.ts.

const logger = pino({ level: 'silent' })
const limits: BucketLimits = { maxObjectBytes: 1024, eventBodyLimitBytes: 64 }
const alice: BucketScope = { kind: 'user', id: 'alice' }
const ops: BucketScope = { kind: 'group', id: 'ops' }
const app: BucketScope = { kind: 'app' }
const as = (sender: string) => ({ sender })

interface Backend {
  readonly name: string
  /** A fresh, empty place to keep buckets; `open` opens a store on it, not started (again: what a restart finds). */
  space (t: Test, limits: BucketLimits): Promise<{ open: () => Promise<BucketStore> }>
}

const level: Backend = {
  name: 'LevelDB',
  async space (t, limits) {
    const { db } = await tempDatabase(t)
    return { open: async () => await openBucketStore(db(), limits) }
  },
}

function redisBackend (redis: () => TestRedis): Backend {
  return {
    name: 'Redis',
    async space (t, limits) {
      const keyPrefix = freshPrefix()
      return {
        async open () {
          const conn = await nodeConnection(t, redis(), keyPrefix)
          // one node that restarts under its name; no sweep within a test (a failed publish waits for start())
          const store = await openRedisBucketStore(conn, limits, { node: 'n1', leaseMs: 600_000 })
          // teardowns run last first: the store stops before its connection closes
          t.teardown(async () => await store.stop())
          return store
        },
      }
    },
  }
}

async function started (t: Test, backend: Backend, options: { limits?: BucketLimits } = {}): Promise<{ store: BucketStore, broker: Recorder, open: () => Promise<BucketStore> }> {
  const { open } = await backend.space(t, options.limits ?? limits)
  const store = await open()
  const broker = new Recorder()
  await store.start(broker, logger)
  return { store, broker, open }
}

let testRedis: TestRedis | undefined
t.before(async () => { testRedis = await startRedis(t) })
const backends = [level, redisBackend(() => {
  if (testRedis === undefined) throw new Error('redis-server not started')
  return testRedis
})]

for (const backend of backends) t.test(backend.name, async (t) => { contract(t, backend) })

function contract (t: Test, backend: Backend): void {
  t.test('create, replace, patch and delete: versions, timestamps, owner, and one event each', async (t) => {
    const { store, broker } = await started(t, backend)
    const created = await store.createObject(alice, 'notes', 'n1', { title: 'hi', tags: ['a'] }, as('alice'))
    t.match(created, { id: 'n1', version: 1, owner: 'alice', body: { title: 'hi', tags: ['a'] } })
    t.equal(created.createdAt, created.modifiedAt)

    const replaced = await store.putObject(alice, 'notes', 'n1', { title: 'hello' }, as('backend'))
    t.equal(replaced.created, false)
    t.match(replaced.object, { id: 'n1', version: 2, owner: 'alice', createdAt: created.createdAt, body: { title: 'hello' } })
    t.ok(replaced.object.modifiedAt >= created.modifiedAt)

    const patched = await store.patchObject(alice, 'notes', 'n1', { title: null, done: true, meta: { a: 1 } }, as('alice'))
    t.strictSame(patched.body, { done: true, meta: { a: 1 } }, 'RFC 7396: null removes, members add')
    t.equal(patched.version, 3)
    t.strictSame(await store.getObject(alice, 'notes', 'n1'), patched, 'what get returns is what was written')

    await store.deleteObject(alice, 'notes', 'n1', as('alice'))
    t.equal(await store.getObject(alice, 'notes', 'n1'), undefined)

    t.same(broker.messages.map((m) => [m.topic, m.qos, m.retain]), Array(4).fill(['users/alice/buckets/notes/events', 1, false]), 'QoS1, not retained, on the events topic')
    const events = broker.events
    t.same(events.map((e) => [e.type, e.version, e.sender]), [
      ['DATA_OBJECT_CREATED', 1, 'alice'],
      ['DATA_OBJECT_UPDATED', 2, 'backend'],
      ['DATA_OBJECT_UPDATED', 3, 'alice'],
      ['DATA_OBJECT_DELETED', 4, 'alice'],
    ])
    for (const event of events) {
      t.match(event, { scope: 'users/alice', bucket: 'notes', objectId: 'n1' })
      t.type(event.eventId, 'string')
    }
    t.equal(new Set(events.map((e) => e.eventId)).size, 4, 'event ids are unique')
    t.strictSame(events[0]?.body, { title: 'hi', tags: ['a'] }, 'small bodies ride along')
    t.equal(events[1]?.modifiedAt, replaced.object.modifiedAt)
    t.notOk('body' in (events[3] ?? {}), 'a deletion has no body')
    t.equal(await store.pendingEvents(), 0, 'nothing left pending')

    // re-created: versions start again at 1 (eventId tells the two lives apart)
    const again = await store.putObject(alice, 'notes', 'n1', { x: 1 }, as('alice'))
    t.equal(again.created, true)
    t.equal(again.object.version, 1)
  })

  t.test('a body over eventBodyLimitBytes is left out of the event, flagged', async (t) => {
    const { store, broker } = await started(t, backend)
    await store.createObject(alice, 'notes', 'big', { text: 'x'.repeat(100) }, as('alice'))
    await store.createObject(alice, 'notes', 'edge', { t: 'x'.repeat(64 - '{"t":""}'.length) }, as('alice'))
    const [big, edge] = broker.events
    t.notOk(big !== undefined && 'body' in big)
    t.equal(big?.bodyOmitted, true)
    t.strictSame(edge?.body, { t: 'x'.repeat(56) }, 'exactly at the limit: included')
    t.notOk(edge !== undefined && 'bodyOmitted' in edge)
  })

  t.test('size limit: maxObjectBytes for creates, replaces and the result of a patch', async (t) => {
    const { store, broker } = await started(t, backend)
    const room = 1024 - '{"t":""}'.length
    await rejectsWith(t, store.createObject(alice, 'b', 'x', { t: 'x'.repeat(room + 1) }, as('alice')), 'PAYLOAD_TOO_LARGE', 'create one byte over')
    const fits = await store.createObject(alice, 'b', 'x', { t: 'x'.repeat(room) }, as('alice'))
    t.equal(fits.version, 1, 'exactly at the limit is fine')
    await rejectsWith(t, store.putObject(alice, 'b', 'x', { t: 'é'.repeat(room) }, as('alice')), 'PAYLOAD_TOO_LARGE', 'bytes, not characters')
    await rejectsWith(t, store.patchObject(alice, 'b', 'x', { more: 1 }, as('alice')), 'PAYLOAD_TOO_LARGE', 'a patch that makes it too large')
    t.equal((await store.getObject(alice, 'b', 'x'))?.version, 1, 'nothing changed')
    t.equal(broker.messages.length, 1, 'no event for refused writes')
  })

  t.test('preconditions: If-Match versions, If-None-Match, existing ids', async (t) => {
    const { store, broker } = await started(t, backend)
    await store.createObject(ops, 'b', 'o', { n: 1 }, as('dave'))
    await rejectsWith(t, store.createObject(ops, 'b', 'o', { n: 2 }, as('dave')), 'ALREADY_EXISTS', 'create with an existing id')
    await rejectsWith(t, store.putObject(ops, 'b', 'o', { n: 2 }, { sender: 'dave', ifNoneMatch: '*' }), 'ALREADY_EXISTS', 'PUT If-None-Match: * on an existing object')
    await rejectsWith(t, store.putObject(ops, 'b', 'o', { n: 2 }, { sender: 'dave', ifMatch: 2 }), 'PRECONDITION_FAILED', 'PUT with a stale version')
    await rejectsWith(t, store.patchObject(ops, 'b', 'o', { n: 2 }, { sender: 'dave', ifMatch: 7 }), 'PRECONDITION_FAILED', 'PATCH with a wrong version')
    await rejectsWith(t, store.deleteObject(ops, 'b', 'o', { sender: 'dave', ifMatch: 0 }), 'PRECONDITION_FAILED', 'DELETE with a wrong version')
    await rejectsWith(t, store.putObject(ops, 'b', 'absent', { n: 2 }, { sender: 'dave', ifMatch: 1 }), 'PRECONDITION_FAILED', 'PUT If-Match on a missing object')
    await rejectsWith(t, store.putObject(ops, 'b', 'absent', { n: 2 }, { sender: 'dave', ifMatch: '*' }), 'PRECONDITION_FAILED', 'PUT If-Match: * on a missing object')
    await rejectsWith(t, store.patchObject(ops, 'b', 'absent', { n: 2 }, as('dave')), 'NOT_FOUND', 'PATCH a missing object')
    await rejectsWith(t, store.deleteObject(ops, 'b', 'absent', as('dave')), 'NOT_FOUND', 'DELETE a missing object')
    t.equal(broker.messages.length, 1, 'refused writes publish nothing')

    t.equal((await store.putObject(ops, 'b', 'o', { n: 2 }, { sender: 'dave', ifMatch: 1 })).object.version, 2)
    t.equal((await store.patchObject(ops, 'b', 'o', { m: 3 }, { sender: 'dave', ifMatch: '*' })).version, 3, 'If-Match: * only needs the object to exist')
    t.strictSame((await store.getObject(ops, 'b', 'o'))?.body, { n: 2, m: 3 })
    await store.deleteObject(ops, 'b', 'o', { sender: 'dave', ifMatch: 3 })
    t.equal((await store.putObject(ops, 'b', 'o', { fresh: true }, { sender: 'dave', ifNoneMatch: '*' })).created, true, 'If-None-Match: * creates once it is gone')
  })

  t.test('listing: id order, pages with a next cursor, buckets and scopes kept apart', async (t) => {
    const { store } = await started(t, backend)
    const ids = ['b', 'a', 'C', '_x', '-y', '9', 'aa', 'a-b', 'z']
    for (const id of ids) await store.createObject(alice, 'notes', id, { id }, as('alice'))
    // neighbours that share a prefix must not leak into the listing
    await store.createObject(alice, 'notes2', 'a', { other: true }, as('alice'))
    await store.createObject(alice, 'note', 'a', { other: true }, as('alice'))
    await store.createObject({ kind: 'user', id: 'alice2' }, 'notes', 'a', { other: true }, as('alice2'))
    await store.createObject(ops, 'notes', 'a', { other: true }, as('dave'))

    const all = await store.listObjects(alice, 'notes', { limit: 100 })
    const sorted = [...ids].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
    t.strictSame(all.objects.map((o) => o.id), sorted, 'byte order of ids')
    t.equal(all.next, null)

    const seen: string[] = []
    let after: string | undefined
    let pages = 0
    do {
      const page = await store.listObjects(alice, 'notes', { limit: 4, ...(after !== undefined && { after }) })
      seen.push(...page.objects.map((o) => o.id))
      after = page.next ?? undefined
      pages++
    } while (after !== undefined)
    t.strictSame(seen, sorted, 'paging sees every object once')
    t.equal(pages, 3)

    const exact = await store.listObjects(alice, 'notes', { limit: ids.length })
    t.equal(exact.next, null, 'a page that ends exactly at the last object has no next')
    t.strictSame((await store.listObjects(alice, 'notes', { limit: 5, after: 'zz' })).objects, [])
    t.strictSame((await store.listObjects(alice, 'empty', { limit: 5 })).objects, [])
    t.strictSame((await store.listObjects(app, 'notes', { limit: 5 })).objects, [], 'app scope is separate')
  })

  t.test('listBuckets: a scope\'s buckets that hold objects, in name order, a page at a time', async (t) => {
    const { store } = await started(t, backend)
    const names = ['notes', 'a-b', 'note', 'notes2', '_x', 'Z']
    for (const name of names) {
      await store.createObject(alice, name, 'one', { name }, as('alice'))
      await store.createObject(alice, name, 'two', { name }, as('alice'))
    }
    // other scopes, and a neighbour whose id starts with alice's, stay out
    await store.createObject({ kind: 'user', id: 'alice2' }, 'other', 'a', {}, as('alice2'))
    await store.createObject({ kind: 'user', id: 'alic' }, 'other', 'a', {}, as('alic'))
    await store.createObject(ops, 'notes', 'a', {}, as('dave'))
    await store.createObject(alice, 'emptied', 'a', {}, as('alice'))
    await store.deleteObject(alice, 'emptied', 'a', as('alice'))

    const sorted = [...names].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
    t.strictSame(await store.listBuckets(alice, { limit: 100 }), { names: sorted, next: null })
    const first = await store.listBuckets(alice, { limit: 4 })
    t.strictSame(first, { names: sorted.slice(0, 4), next: sorted[3] })
    t.strictSame(await store.listBuckets(alice, { limit: 4, after: first.next as string }), { names: sorted.slice(4), next: null })
    t.strictSame(await store.listBuckets(ops, { limit: 10 }), { names: ['notes'], next: null })
    t.strictSame(await store.listBuckets({ kind: 'group', id: 'nobody' }, { limit: 10 }), { names: [], next: null })
    // a user id with glob characters matches itself only (Redis SCAN patterns)
    const globby: BucketScope = { kind: 'user', id: 'a*[l]?' }
    await store.createObject(globby, 'mine', 'a', {}, as('a*[l]?'))
    t.strictSame(await store.listBuckets(globby, { limit: 10 }), { names: ['mine'], next: null })
    await store.deleteBucket(alice, 'notes', { sender: 'alice' })
    t.notOk((await store.listBuckets(alice, { limit: 100 })).names.includes('notes'), 'a deleted bucket is gone')
  })

  t.test('the write is in the store before its event is published', async (t) => {
    const { store, broker } = await started(t, backend)
    const seenAtPublish: Array<number | undefined> = []
    broker.onPublish = async () => { seenAtPublish.push((await store.getObject(alice, 'notes', 'n'))?.version) }
    await store.createObject(alice, 'notes', 'n', { a: 1 }, as('alice'))
    await store.patchObject(alice, 'notes', 'n', { a: 2 }, as('alice'))
    await store.deleteObject(alice, 'notes', 'n', as('alice'))
    t.strictSame(seenAtPublish, [1, 2, undefined])
  })

  t.test('an event whose publish failed stays pending and is published at the next start', async (t) => {
    const { store, broker, open } = await started(t, backend)
    await store.createObject(alice, 'notes', 'n', { a: 1 }, as('alice'))
    broker.fail = new Error('broker down')
    await t.rejects(store.patchObject(alice, 'notes', 'n', { a: 2 }, as('alice')), /broker down/)
    await t.rejects(store.deleteBucket(ops, 'gone', as('dave')), /broker down/)
    t.equal((await store.getObject(alice, 'notes', 'n'))?.version, 2, 'the write stands')
    t.equal(await store.pendingEvents(), 2)

    // what start() finds after a crash: a fresh store on the same data
    const reopened = await open()
    const next = new Recorder()
    await reopened.start(next, logger)
    t.same(next.events.map((e) => [e.type, e.objectId, e.version]), [['DATA_OBJECT_UPDATED', 'n', 2], ['BUCKET_DELETED', null, null]], 'in write order')
    t.equal(await reopened.pendingEvents(), 0)
    const again = new Recorder()
    await (await open()).start(again, logger)
    t.equal(again.messages.length, 0, 'published once, then forgotten')

    // new writes after a restart come after the replayed ones
    await reopened.createObject(alice, 'notes', 'm', {}, as('alice'))
    t.equal(next.events.at(-1)?.objectId, 'm')
  })

  t.test('writes before start() are refused', async (t) => {
    const store = await (await backend.space(t, limits)).open()
    await rejectsWith(t, store.createObject(alice, 'notes', 'n', {}, as('alice')), 'SERVER_UNAVAILABLE', 'not started')
    t.equal(await store.getObject(alice, 'notes', 'n'), undefined)
    t.equal(await store.pendingEvents(), 0)
  })

  t.test('concurrent writes to one object get consecutive versions and publish in version order', async (t) => {
    const { store, broker } = await started(t, backend)
    await store.createObject(alice, 'notes', 'hot', { n: 0 }, as('alice'))
    await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      if (i % 3 === 0) await store.patchObject(alice, 'notes', 'hot', { [`k${i}`]: i }, as('alice'))
      else await store.putObject(alice, 'notes', 'hot', { n: i }, as('alice'))
    }))
    t.equal((await store.getObject(alice, 'notes', 'hot'))?.version, 31)
    t.strictSame(broker.events.map((e) => e.version), Array.from({ length: 31 }, (_, i) => i + 1))

    // If-Match races: of writers that all read version 31, exactly one wins
    const results = await Promise.allSettled(Array.from({ length: 10 }, async () => await store.putObject(alice, 'notes', 'hot', {}, { sender: 'alice', ifMatch: 31 })))
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
    t.equal(results.filter((r) => r.status === 'rejected' && (r.reason as HeraldError).code === 'PRECONDITION_FAILED').length, 9)
  })

  t.test('deleting a bucket drops its objects only, after the writes in flight, with one event', async (t) => {
    const { store, broker } = await started(t, backend)
    for (let i = 0; i < 20; i++) await store.createObject(ops, 'tasks', `t${i}`, { i }, as('dave'))
    await store.createObject(ops, 'tasks2', 'keep', {}, as('dave'))
    await store.createObject(alice, 'tasks', 'keep', {}, as('alice'))
    broker.messages.length = 0

    // writes queued before the delete finish first; the delete then removes what they made
    const writes = Array.from({ length: 5 }, async (_, i) => await store.putObject(ops, 'tasks', `w${i}`, {}, as('dave')))
    const dropped = await store.deleteBucket(ops, 'tasks', as('dave'))
    await Promise.all(writes)
    t.equal(dropped, 25)
    t.strictSame((await store.listObjects(ops, 'tasks', { limit: 100 })).objects, [])
    t.equal((await store.listObjects(ops, 'tasks2', { limit: 100 })).objects.length, 1)
    t.equal((await store.listObjects(alice, 'tasks', { limit: 100 })).objects.length, 1)
    const events = broker.events
    t.equal(events.length, 6)
    t.match(events.at(-1), { type: 'BUCKET_DELETED', scope: 'groups/ops', bucket: 'tasks', objectId: null, version: null, sender: 'dave' })

    t.equal(await store.deleteBucket(ops, 'tasks', as('dave')), 0, 'an empty user or group bucket can be deleted again')
  })

  t.test('app buckets: created by name with an ACL, kept in memory, tombstoned on delete', async (t) => {
    const { store, broker, open } = await started(t, backend)
    await rejectsWith(t, store.createObject(app, 'news', 'a', {}, as('root')), 'NOT_FOUND', 'no objects before the bucket exists')
    const acl = { read: ['authenticated'], write: ['role:service'] }
    const created = await store.putAppBucket('news', acl)
    t.equal(created?.created, true)
    t.strictSame(store.bucketAcl('news'), acl)
    t.equal(await store.putAppBucket('news', acl, { onlyIfAbsent: true }), undefined, 'create-only on an existing bucket')
    const replaced = await store.putAppBucket('news', { read: ['group:ops'], write: ['role:service'] })
    t.equal(replaced?.created, false)
    t.equal(replaced?.bucket.createdAt, created?.bucket.createdAt)
    await store.putAppBucket('alerts', acl)
    t.strictSame(store.listAppBuckets().map((b) => b.name), ['alerts', 'news'])

    await store.createObject(app, 'news', 'a', { headline: 'x' }, as('backend'))
    t.equal(broker.messages.at(-1)?.topic, 'app/buckets/news/events')
    t.equal(await store.deleteBucket(app, 'news', as('root')), 1)
    t.match(broker.events.at(-1), { type: 'BUCKET_DELETED', scope: 'app', bucket: 'news' })
    t.equal(store.getAppBucket('news'), undefined, 'gone for the API')
    t.strictSame(store.bucketAcl('news'), { read: ['group:ops'], write: ['role:service'] }, 'the ACL stays, so the queued BUCKET_DELETED still reaches devices')
    t.strictSame(store.listAppBuckets().map((b) => b.name), ['alerts'])
    await rejectsWith(t, store.createObject(app, 'news', 'b', {}, as('root')), 'NOT_FOUND', 'no objects in a deleted bucket')
    await rejectsWith(t, store.deleteBucket(app, 'news', as('root')), 'NOT_FOUND', 'deleted twice')
    await rejectsWith(t, store.deleteBucket(app, 'never', as('root')), 'NOT_FOUND', 'never created')

    // the directory is durable
    const reopened = await open()
    t.strictSame(reopened.listAppBuckets().map((b) => b.name), ['alerts'])
    t.ok(reopened.bucketAcl('news'))
    t.equal((await reopened.putAppBucket('news', acl))?.created, true, 'a deleted bucket can be created again')
  })
}
