import { Level } from 'level'
import type { Database } from './open-store.js'

/** `storage.fsync`: whether a write is on the disk (`batch`) or may still be in the page cache (`none`) when it resolves. */
export type FsyncMode = 'batch' | 'none'

type WriteOptions = Record<string, unknown>

interface ChainedBatchImplementation {
  _write (options: WriteOptions): Promise<void>
}

/**
 * classic-level's implementation methods that write. Every write of every
 * store ends in one of them: sublevels forward to the root database's public
 * methods, which call these; the group commit calls `_batch` directly
 * (batch-target.ts); a chained batch (`db.batch().put().write()`) ends in its
 * `_write`.
 */
export interface WriteImplementation {
  _put (key: unknown, value: unknown, options: WriteOptions): Promise<void>
  _del (key: unknown, options: WriteOptions): Promise<void>
  _batch (operations: unknown[], options: WriteOptions): Promise<void>
  _chainedBatch (): ChainedBatchImplementation
  _clear (options: WriteOptions): Promise<void>
}

export interface StorageGuardOptions {
  readonly fsync: FsyncMode
}

export interface StorageGuard {
  readonly fsync: FsyncMode
}

/** Deletes of a sync `_clear` go out in batches of this many keys. */
const CLEAR_CHUNK = 1000

/**
 * Applies `storage.fsync` to every write of a LevelDB database, whoever
 * makes it: with `batch`, each write is a LevelDB write with `sync: true`
 * (fdatasync of the log before the write resolves), so no acknowledgement
 * (PUBACK, 2xx) that waits for a write goes out before its data is on the
 * disk. LevelDB itself groups concurrent writers into one log write and one
 * sync, and Herald's group commit (group-commit.ts) makes a QoS 1 fan-out
 * one write, so the syncs are per batch, not per message.
 *
 * Done on the database's implementation methods rather than by each store:
 * aedes-persistence-level writes subscriptions, wills and retained messages
 * through its own calls, and a store that forgot the option would be the one
 * whose acknowledgement lies.
 *
 * The in-memory engine (memory-level) has nothing to sync.
 */
export function guardStorage (db: Database, { fsync }: StorageGuardOptions): StorageGuard {
  const guard: StorageGuard = { fsync }
  if (!(db instanceof Level) || fsync === 'none') return guard
  const implementation = db as unknown as WriteImplementation
  const put = implementation._put.bind(db)
  const del = implementation._del.bind(db)
  const batch = implementation._batch.bind(db)
  const chainedBatch = implementation._chainedBatch.bind(db)
  const synced = (options: WriteOptions): WriteOptions => ({ ...options, sync: true })

  implementation._put = async (key, value, options) => { await put(key, value, synced(options)) }
  implementation._del = async (key, options) => { await del(key, synced(options)) }
  implementation._batch = async (operations, options) => { await batch(operations, synced(options)) }
  implementation._chainedBatch = () => {
    const chained = chainedBatch()
    const write = chained._write.bind(chained)
    chained._write = async (options) => { await write(synced(options)) }
    return chained
  }
  // classic-level's native clear writes without sync whatever it is given
  // (binding.cc: `writeOptions_->sync = false`): the keys are deleted here
  // instead, in synced batches.
  implementation._clear = async (options) => {
    const limit = typeof options['limit'] === 'number' && options['limit'] >= 0 ? options['limit'] : Infinity
    const range: WriteOptions = { keyEncoding: options['keyEncoding'], reverse: options['reverse'] === true }
    for (const bound of ['gt', 'gte', 'lt', 'lte']) if (options[bound] !== undefined) range[bound] = options[bound]
    let deleted = 0
    let chunk: Array<{ type: 'del', key: unknown }> = []
    for await (const key of db.keys(range as object)) {
      if (deleted >= limit) break
      chunk.push({ type: 'del', key })
      deleted++
      if (chunk.length === CLEAR_CHUNK) {
        await batch(chunk, synced({ keyEncoding: options['keyEncoding'] }))
        chunk = []
      }
    }
    if (chunk.length > 0) await batch(chunk, synced({ keyEncoding: options['keyEncoding'] }))
  }
  return guard
}
