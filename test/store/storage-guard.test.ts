import t from 'tap'
import { groupCommitTarget } from '../../src/store/batch-target.js'
import { GroupCommit } from '../../src/store/group-commit.js'
import { openDatabase, type Database } from '../../src/store/open-store.js'
import { guardStorage, type FsyncMode } from '../../src/store/storage-guard.js'
import { makeTempDir } from '../helpers/broker.js'
import { spyOnWrites, type ObservedWrite } from '../helpers/write-spy.js'

/** Every way Herald's stores and aedes-persistence-level write, once each. */
async function writeEveryWay (db: Database): Promise<void> {
  const json = db.sublevel<string, unknown>('json', { valueEncoding: 'json' })
  const buffers = db.sublevel<string, Buffer>('buffers', { valueEncoding: 'buffer' })
  await db.put('root', 'value')
  await db.del('root')
  await json.put('a', { n: 1 })
  await json.del('a')
  await db.batch([{ type: 'put', key: 'b', value: { n: 2 }, sublevel: json }, { type: 'del', key: 'c', sublevel: json }])
  await json.batch([{ type: 'put', key: 'd', value: { n: 3 } }])
  await db.batch().put('e', { n: 4 }, { sublevel: json }).del('f', { sublevel: json }).write()
  await buffers.batch().put('g', Buffer.from([1])).write()
  await new GroupCommit(groupCommitTarget(db)).write([{ type: 'put', key: buffers.prefixKey('h', 'utf8'), value: Buffer.from([2]) }])
  await json.clear({ gte: 'b', lt: 'e' })
}

for (const fsync of ['batch', 'none'] as const satisfies readonly FsyncMode[]) {
  t.test(`storage.fsync ${fsync}: every write path reaches LevelDB ${fsync === 'batch' ? 'with' : 'without'} sync`, async (t) => {
    const db = await openDatabase(await makeTempDir(t))
    t.teardown(async () => await db.close())
    const writes = spyOnWrites(db)
    guardStorage(db, { fsync })
    await writeEveryWay(db)

    const methods = new Set(writes.map((w) => w.method))
    t.ok(['_put', '_del', '_batch', 'chained'].every((m) => methods.has(m as ObservedWrite['method'])), `seen: ${[...methods].join(', ')}`)
    t.ok(writes.length >= 10, `${writes.length} writes observed`)
    const unexpected = writes.filter((w) => w.sync !== (fsync === 'batch'))
    t.strictSame(unexpected, [], fsync === 'batch' ? 'no write without sync' : 'no write with sync')
    // the group commit's direct path (batch-target.ts) is one of them
    t.ok(writes.some((w) => w.method === '_batch' && w.keys.includes('!buffers!h') && w.sync === (fsync === 'batch')), 'the group commit batch')
    const json = db.sublevel<string, unknown>('json', { valueEncoding: 'json' })
    t.strictSame(await json.keys().all(), ['e'], 'the clear deleted its range and nothing else')
  })
}

t.test('a synced clear honours the range, limit and reverse as the native one does', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  guardStorage(db, { fsync: 'batch' })
  const items = db.sublevel<string, string>('items', { valueEncoding: 'utf8' })
  const other = db.sublevel<string, string>('other', { valueEncoding: 'utf8' })
  const keys = Array.from({ length: 2500 }, (_, i) => `k${String(i).padStart(4, '0')}`)
  await items.batch(keys.map((key) => ({ type: 'put' as const, key, value: 'v' })))
  await other.put('k0001', 'kept')

  await items.clear({ gt: 'k0000', lte: 'k2100' })
  t.strictSame(await items.keys().all(), ['k0000', ...keys.slice(2101)], 'more than one chunk of deletes')
  await items.clear({ reverse: true, limit: 2 })
  t.strictSame(await items.keys().all(), ['k0000', ...keys.slice(2101, 2498)], 'the last two')
  await items.clear()
  t.strictSame(await items.keys().all(), [])
  t.equal(await other.get('k0001'), 'kept', 'another sublevel is untouched')
})

t.test('the in-memory engine is left alone', async (t) => {
  const db = await openDatabase('unused', 'memory')
  t.teardown(async () => await db.close())
  const put = (db as unknown as { _put: unknown })._put
  guardStorage(db, { fsync: 'batch' })
  t.equal((db as unknown as { _put: unknown })._put, put)
})
