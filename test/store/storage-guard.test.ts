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

/** An error as classic-level reports a failed LevelDB write. */
function ioError (reason: string): Error {
  return Object.assign(new Error(`IO error: /data/db/000005.ldb: ${reason}`), { code: 'LEVEL_IO_ERROR' })
}

interface Faults {
  /** thrown by every native write while set */
  fault: Error | undefined
  /** native writes attempted */
  attempts: number
  /** resolves at the next write of the heal's probe */
  nextProbe (): Promise<void>
}

/** Makes the native writes of `db` fail on demand; installed below the guard, as a full disk would be. */
function injectFaults (db: Database): Faults {
  const implementation = db as unknown as Record<'_put' | '_del' | '_batch', (...args: unknown[]) => Promise<void>>
  let probed: Array<() => void> = []
  const faults: Faults = {
    fault: undefined,
    attempts: 0,
    nextProbe: async () => await new Promise<void>((resolve) => probed.push(resolve)),
  }
  for (const method of ['_put', '_del', '_batch'] as const) {
    const original = implementation[method].bind(db)
    implementation[method] = async (...args: unknown[]) => {
      faults.attempts++
      try {
        if (faults.fault !== undefined) throw faults.fault
        await original(...args)
      } finally {
        if (method === '_del' && String(args[0]).includes('storage-probe')) {
          for (const resolve of probed) resolve()
          probed = []
        }
      }
    }
  }
  return faults
}

t.test('a full disk stops every write (STORAGE_FULL) until the store heals by itself; reads go on', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const faults = injectFaults(db)
  const guard = guardStorage(db, { fsync: 'batch', healIntervalMs: 5 })
  t.teardown(() => guard.close())
  const items = db.sublevel<string, string>('items', { valueEncoding: 'utf8' })
  const queue = new GroupCommit(groupCommitTarget(db))
  await items.put('a', '1')
  t.equal(guard.problem(), null)

  faults.fault = ioError('No space left on device')
  await t.rejects(items.put('b', '2'), { code: 'STORAGE_FULL' }, 'the write that met the full disk')
  t.equal(guard.problem()?.code, 'STORAGE_FULL')
  t.equal(guard.problem()?.status, 503)

  // refused at once, without reaching LevelDB: a log append after a failed one may not read back
  faults.fault = undefined
  const attempts = faults.attempts
  await t.rejects(items.put('c', '3'), { code: 'STORAGE_FULL' })
  await t.rejects(db.batch().put('d', '4', { sublevel: items }).write(), { code: 'STORAGE_FULL' })
  await t.rejects(queue.write([{ type: 'put', key: items.prefixKey('e', 'utf8'), value: Buffer.from('5') }]), { code: 'STORAGE_FULL' })
  await t.rejects(items.clear(), { code: 'STORAGE_FULL' })
  await items.clear({ gt: 'x' })
  t.pass('a clear of an empty range writes nothing, so it is not refused (aedes clears at every clean CONNECT)')
  t.equal(faults.attempts, attempts, 'nothing reached LevelDB')
  t.equal(await items.get('a'), '1', 'reads go on')

  // space is back: the store reopens, proves it writes, and takes writes again, through its sublevels too
  await guard.writable()
  t.equal(guard.problem(), null)
  t.equal(db.status, 'open')
  t.equal(items.status, 'open', 'the sublevel was reopened with the database')
  await items.put('b', '2')
  await queue.write([{ type: 'put', key: items.prefixKey('e', 'utf8'), value: Buffer.from('5') }])
  t.strictSame(await items.keys().all(), ['a', 'b', 'e'])
})

t.test('while the disk stays full, healing keeps trying and the store keeps refusing', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const faults = injectFaults(db)
  const guard = guardStorage(db, { fsync: 'none', healIntervalMs: 5 })
  t.teardown(() => guard.close())
  faults.fault = ioError('No space left on device')
  await t.rejects(db.put('x', 'y'), { code: 'STORAGE_FULL' })
  await faults.nextProbe()
  await faults.nextProbe()
  t.equal(guard.problem()?.code, 'STORAGE_FULL', 'two failed probes later, still refusing')
  faults.fault = undefined
  await guard.writable()
  await db.put('x', 'y')
  t.equal(await db.get('x'), 'y')
})

t.test('another I/O error stops writes as SERVER_UNAVAILABLE; other errors leave the store alone', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const faults = injectFaults(db)
  const guard = guardStorage(db, { fsync: 'batch', healIntervalMs: 5 })
  t.teardown(() => guard.close())

  faults.fault = Object.assign(new Error('something else'), { code: 'LEVEL_NOT_SUPPORTED' })
  await t.rejects(db.put('x', 'y'), { code: 'LEVEL_NOT_SUPPORTED' })
  t.equal(guard.problem(), null, 'not an I/O error: the store still writes')

  faults.fault = ioError('Input/output error')
  await t.rejects(db.put('x', 'y'), { code: 'SERVER_UNAVAILABLE' })
  t.equal(guard.problem()?.code, 'SERVER_UNAVAILABLE')
  faults.fault = undefined
  await guard.writable()
  await db.put('x', 'y')
})
