import AedesPacket from 'aedes-packet'
import AsyncLevelPersistence from 'aedes-persistence-level/asyncPersistence.js'
import t from 'tap'
import { isHeraldError } from '../../src/errors/index.js'
import { openDatabase, type Database } from '../../src/store/open-store.js'
import { SessionStore, type PersistedPacket } from '../../src/store/session-store.js'
import { makeTempDir } from '../helpers/broker.js'

const fakeBroker = { id: 'broker-1', counter: 0 }
const retained = (topic: string, body: string): PersistedPacket =>
  new AedesPacket({ cmd: 'publish', topic, payload: Buffer.from(body), qos: 1, retain: true }, fakeBroker) as unknown as PersistedPacket

/** The session store of the database in `dir`, as the broker opens it at start; the caller closes `db`. */
async function openStoreAt (dir: string): Promise<{ db: Database, store: SessionStore }> {
  const db = await openDatabase(dir)
  const store = new SessionStore(db.sublevel('sessions', { valueEncoding: 'buffer' }))
  await store.setup({ id: 'broker-1' })
  return { db, store }
}

/** topic → payload of the retained messages a SUBSCRIBE with these filters gets, in the order it gets them. */
async function retainedFor (store: { createRetainedStreamCombi (filters: string[]): NodeJS.ReadableStream }, filters: string[]): Promise<Array<[string, string]>> {
  const found: Array<[string, string]> = []
  for await (const packet of store.createRetainedStreamCombi(filters) as AsyncIterable<{ topic: string, payload: Buffer, retain: boolean }>) {
    found.push([packet.topic, packet.payload.toString()])
  }
  return found
}

async function refusedCode (promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
    return undefined
  } catch (err) {
    return isHeraldError(err) ? err.code : String(err)
  }
}

t.test('retained messages: stored, replaced, deleted by an empty payload, and the same after a restart', async (t) => {
  const dir = await makeTempDir(t)
  const first = await openStoreAt(dir)
  await first.store.storeRetained(retained('users/alice/status', 'online'))
  await first.store.storeRetained(retained('users/alice/status', 'away'))
  await first.store.storeRetained(retained('users/alice', 'profile'))
  await first.store.storeRetained(retained('users/bob/status', 'online'))
  await first.store.storeRetained(retained('users/bob/old', 'x'))
  // [MQTT-3.3.1-10] an empty retained message deletes the topic's
  await first.store.storeRetained(retained('users/bob/old', ''))
  await first.store.storeRetained(retained('users/never/stored', ''))
  t.same(await retainedFor(first.store, ['users/alice/#']), [['users/alice', 'profile'], ['users/alice/status', 'away']])
  t.same(await retainedFor(first.store, ['users/bob/#']), [['users/bob/status', 'online']])
  await first.db.close()

  const second = await openStoreAt(dir)
  t.teardown(async () => await second.db.close())
  t.same(await retainedFor(second.store, ['users/+/status']), [['users/alice/status', 'away'], ['users/bob/status', 'online']])
  t.same(await retainedFor(second.store, ['users/bob/old', 'users/never/stored']), [])
  t.same(await retainedFor(second.store, ['users/alice/status', 'users/alice/#']), [['users/alice/status', 'away'], ['users/alice', 'profile']], 'each message once, in the order of the filters')
})

t.test('the store reads and writes aedes-persistence-level\'s keys and encoding', async (t) => {
  const dir = await makeTempDir(t)
  const db = await openDatabase(dir)
  const library = new AsyncLevelPersistence(db.sublevel('sessions', { valueEncoding: 'buffer' }))
  await library.setup({ id: 'broker-1' })
  await library.storeRetained(retained('users/alice/written-by-the-library', 'old'))
  await db.close()

  const { db: db2, store } = await openStoreAt(dir)
  t.same(await retainedFor(store, ['users/alice/#']), [['users/alice/written-by-the-library', 'old']])
  await store.storeRetained(retained('users/alice/written-by-herald', 'new'))
  const readByLibrary = new AsyncLevelPersistence(db2.sublevel('sessions', { valueEncoding: 'buffer' }))
  t.same(await retainedFor(readByLibrary, ['users/alice/#']), [['users/alice/written-by-herald', 'new'], ['users/alice/written-by-the-library', 'old']])
  await db2.close()
})

t.test('bounds: a new topic beyond one is refused; replacing and deleting never are; the counts survive a restart', async (t) => {
  const dir = await makeTempDir(t)
  const { db, store } = await openStoreAt(dir)
  store.limitRetained({ maxRetainedPerUser: 2, maxRetainedPerGroup: 3, maxRetained: 8 })
  await store.storeRetained(retained('users/alice/a', '1'))
  await store.storeRetained(retained('users/alice', '1'))
  t.notOk(store.mayRetain('users/alice/c', 1))
  t.ok(store.mayRetain('users/alice/c', 0), 'a delete always may')
  t.ok(store.mayRetain('users/alice/a', 1), 'a replacement always may')
  t.ok(store.mayRetain('users/bob/a', 1), 'another user has a bound of his own')
  t.equal(await refusedCode(store.storeRetained(retained('users/alice/c', '1'))), 'TOO_MANY_RETAINED')
  t.equal(await refusedCode(store.storeRetained(retained('users/alice/a', '2'))), undefined)
  t.same(await retainedFor(store, ['users/alice/#']), [['users/alice', '1'], ['users/alice/a', '2']], 'nothing of the refused message was stored')

  for (const topic of ['groups/ops/a', 'groups/ops/b', 'groups/ops/c']) await store.storeRetained(retained(topic, '1'))
  t.equal(await refusedCode(store.storeRetained(retained('groups/ops/d', '1'))), 'TOO_MANY_RETAINED')
  await store.storeRetained(retained('groups/dev/a', '1'))
  // 6 stored: app and other topics count towards maxRetained (8) only
  await store.storeRetained(retained('app/news', '1'))
  await store.storeRetained(retained('telemetry/x', '1'))
  t.equal(await refusedCode(store.storeRetained(retained('telemetry/y', '1'))), 'TOO_MANY_RETAINED')
  t.equal(await refusedCode(store.storeRetained(retained('users/bob/a', '1'))), 'TOO_MANY_RETAINED', 'maxRetained holds for users too')
  await store.storeRetained(retained('telemetry/x', ''))
  await store.storeRetained(retained('users/bob/a', '1'))
  await db.close()

  const again = await openStoreAt(dir)
  t.teardown(async () => await again.db.close())
  again.store.limitRetained({ maxRetainedPerUser: 2, maxRetainedPerGroup: 3, maxRetained: 0 })
  t.equal(await refusedCode(again.store.storeRetained(retained('users/alice/c', '1'))), 'TOO_MANY_RETAINED', 'the count came back from LevelDB')
  await again.store.storeRetained(retained('users/alice/a', ''))
  await again.store.storeRetained(retained('users/alice/c', '1'))
  t.same((await retainedFor(again.store, ['users/alice/#'])).map(([topic]) => topic), ['users/alice', 'users/alice/c'])
  t.ok(again.store.mayRetain('anything/else', 1), 'maxRetained 0: no global bound')
})

t.test('new topics asked for at once cannot overshoot a bound', async (t) => {
  const { db, store } = await openStoreAt(await makeTempDir(t))
  t.teardown(async () => await db.close())
  store.limitRetained({ maxRetainedPerUser: 5, maxRetainedPerGroup: 0, maxRetained: 0 })
  const outcomes = await Promise.all(Array.from({ length: 20 }, async (_, i) => await refusedCode(store.storeRetained(retained(`users/alice/t${i}`, 'x')))))
  t.equal(outcomes.filter((code) => code === undefined).length, 5)
  t.equal(outcomes.filter((code) => code === 'TOO_MANY_RETAINED').length, 15)
  t.equal((await retainedFor(store, ['users/alice/#'])).length, 5)
  // a topic whose first write is still on its way is not new to a second write
  const a = store.storeRetained(retained('users/carol/x', '1'))
  store.limitRetained({ maxRetainedPerUser: 1, maxRetainedPerGroup: 0, maxRetained: 0 })
  const b = store.storeRetained(retained('users/carol/x', '2'))
  t.equal(await refusedCode(store.storeRetained(retained('users/carol/y', '1'))), 'TOO_MANY_RETAINED', 'the write on its way counts')
  await Promise.all([a, b])
  t.same(await retainedFor(store, ['users/carol/#']), [['users/carol/x', '2']])
})
