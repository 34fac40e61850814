import { readdir, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import type { Logger } from 'pino'
import { HeraldError } from '../errors/index.js'
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
  /** hears when the store stops and starts writing again */
  readonly logger?: Logger
  /** how often a store that cannot write checks whether it can again; 1 s by default */
  readonly healIntervalMs?: number
}

export interface StorageGuard {
  readonly fsync: FsyncMode
  /** Why the store cannot write now (STORAGE_FULL, or SERVER_UNAVAILABLE for other I/O errors); null while it can. */
  problem (): HeraldError | null
  /** Resolves once the store can write (at once if it can). */
  writable (): Promise<void>
  /** Stops healing; before the database closes. */
  close (): void
}

/** Deletes of a sync `_clear` go out in batches of this many keys. */
const CLEAR_CHUNK = 1000
/** Space a reopen needs beyond LevelDB's logs, which it turns into a table first: a new log, the manifest. */
const REOPEN_HEADROOM_BYTES = 1024 * 1024
/** The key of the write that proves a healed store writes again (a delete: it leaves nothing behind). */
const PROBE_KEY = 'herald:storage-probe'

type FailureKind = 'full' | 'io'

interface Failure {
  readonly kind: FailureKind
  readonly since: number
  /** writes refused since */
  refused: number
  /** the last reason a heal failed, logged once */
  healError: string | undefined
}

/**
 * Guards every write of a LevelDB database, whoever makes it: the session
 * store's group commit (batch-target.ts calls `_batch` directly),
 * aedes-persistence-level's own puts, every store's batches, sublevels
 * (they forward to the root database) and chained batches. Done on the
 * database's implementation methods rather than by each store, so no store
 * can forget it.
 *
 * **storage.fsync.** With `batch`, each write is a LevelDB write with
 * `sync: true` (fdatasync of the log before the write resolves), so no
 * acknowledgement (PUBACK, 2xx) that waits for a write goes out before its
 * data is on the disk. LevelDB groups concurrent writers into one log write
 * and one sync, and the group commit (group-commit.ts) makes a QoS 1 fan-out
 * one write, so the syncs are per batch, not per message.
 *
 * **A full disk, or another I/O error.** LevelDB does not get over a failed
 * write by itself: a failed compaction or log sync leaves it refusing every
 * later write with the same error until it is reopened (`bg_error_` in
 * leveldb's db_impl.cc), and a log append that failed half-way leaves the
 * log writer's block offset ahead of the file, so records appended after it
 * may not read back at the next open. So the first write that fails with an
 * I/O error stops all writes: each is refused at once (STORAGE_FULL when
 * the disk is full) while reads go on. Every `healIntervalMs`, once the
 * disk has room for what reopening writes (LevelDB turns its log into a
 * table: the logs' size, plus a margin), the database is closed and opened
 * again (sublevels with it), a synced probe write is made, and writes resume.
 * The reopen replays the log, where a record cut short by the full disk is
 * dropped as a truncated tail. Operations that arrive while it is closed
 * (tens of milliseconds) fail with LEVEL_DATABASE_NOT_OPEN.
 *
 * The in-memory engine (memory-level) has nothing to sync and no disk.
 */
export function guardStorage (db: Database, { fsync, logger, healIntervalMs = 1000 }: StorageGuardOptions): StorageGuard {
  if (!(db instanceof Level)) {
    return { fsync, problem: () => null, writable: async () => {}, close: () => {} }
  }
  const level = db as unknown as Level<string, unknown> & WriteImplementation
  // the probe write of a heal goes around the guard
  const del = level._del.bind(db)
  const options = writeOptions(fsync)
  const sublevels = trackSublevels(db)

  let failure: Failure | undefined
  let closed = false
  let timer: NodeJS.Timeout | undefined
  let waiters: Array<() => void> = []

  async function guarded (write: () => Promise<void>): Promise<void> {
    if (failure !== undefined) {
      failure.refused++
      throw refusal(failure.kind)
    }
    try {
      await write()
    } catch (err) {
      const kind = failureKind(err)
      if (kind === undefined) throw err
      fail(kind, err)
      throw refusal(kind, err)
    }
  }

  function fail (kind: FailureKind, err: unknown): void {
    if (failure !== undefined) return
    failure = { kind, since: Date.now(), refused: 0, healError: undefined }
    logger?.error({ err, code: refusal(kind).code, location: level.location },
      kind === 'full' ? 'the disk is full: every write is refused until space is freed' : 'the store cannot write: every write is refused until it can again')
    schedule()
  }

  function schedule (): void {
    if (closed || timer !== undefined) return
    // not unref'd: healing is work in progress, and close() (server stop) ends it
    timer = setTimeout(() => { void heal() }, healIntervalMs)
  }

  async function heal (): Promise<void> {
    timer = undefined
    const failed = failure
    if (closed || failed === undefined) return
    try {
      const outcome = await reopen(db, level.location, sublevels, async () => await del(PROBE_KEY, options({})), () => closed)
      if (outcome === 'no room') schedule()
      if (outcome !== 'reopened') return
    } catch (err) {
      noteHealError(failed, err, logger, level.location)
      schedule()
      return
    }
    failure = undefined
    logger?.info({ downMs: Date.now() - failed.since, refusedWrites: failed.refused }, 'the store writes again')
    for (const resolve of waiters) resolve()
    waiters = []
  }

  guardWrites(db, fsync, guarded, () => failure !== undefined)

  return {
    fsync,
    problem: () => failure === undefined ? null : refusal(failure.kind),
    writable: async () => {
      if (failure !== undefined) await new Promise<void>((resolve) => waiters.push(resolve))
    },
    close () {
      closed = true
      clearTimeout(timer)
      timer = undefined
    },
  }
}

/**
 * One heal: once the disk has room for what reopening writes, closes and
 * opens the database again (its sublevels with it) and makes the probe write.
 * Throws what failed; 'closed' when the guard closed meanwhile.
 */
async function reopen (db: Database, location: string, sublevels: ReturnType<typeof trackSublevels>, probe: () => Promise<void>, closed: () => boolean): Promise<'reopened' | 'no room' | 'closed'> {
  if (!await roomToReopen(location)) return 'no room'
  if (db.status === 'open') await db.close()
  if (closed()) return 'closed'
  await db.open()
  for (const sublevel of sublevels) if (sublevel.status === 'closed') await sublevel.open()
  await probe()
  return 'reopened'
}

/** Logs why a heal failed, once for each new reason. */
function noteHealError (failed: Failure, err: unknown, logger: Logger | undefined, location: string): void {
  const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)
  if (failed.healError !== reason) logger?.warn({ err, location }, 'the store cannot write yet; trying again')
  failed.healError = reason
}

/** The options every write is made with under `storage.fsync`. */
function writeOptions (fsync: FsyncMode): (given: WriteOptions) => WriteOptions {
  return fsync === 'batch' ? (given) => ({ ...given, sync: true }) : (given) => given
}

/** Why a write is refused while the store cannot write. */
function refusal (kind: FailureKind, cause?: unknown): HeraldError {
  return kind === 'full'
    ? new HeraldError('STORAGE_FULL', undefined, { cause })
    : new HeraldError('SERVER_UNAVAILABLE', 'the store cannot write (I/O error); retry later', { cause })
}

/** Routes every write implementation method of the database through `guarded`, with the options `storage.fsync` asks for. */
function guardWrites (db: Level<string, unknown>, fsync: FsyncMode, guarded: (write: () => Promise<void>) => Promise<void>, failing: () => boolean): void {
  const level = db as unknown as Level<string, unknown> & WriteImplementation
  const put = level._put.bind(db)
  const del = level._del.bind(db)
  const batch = level._batch.bind(db)
  const chainedBatch = level._chainedBatch.bind(db)
  const clear = level._clear.bind(db)
  const options = writeOptions(fsync)
  level._put = async (key, value, given) => { await guarded(async () => { await put(key, value, options(given)) }) }
  level._del = async (key, given) => { await guarded(async () => { await del(key, options(given)) }) }
  level._batch = async (operations, given) => { await guarded(async () => { await batch(operations, options(given)) }) }
  level._chainedBatch = () => {
    const chained = chainedBatch()
    const write = chained._write.bind(chained)
    chained._write = async (given) => { await guarded(async () => { await write(options(given)) }) }
    return chained
  }
  level._clear = async (given) => {
    // aedes clears a clean session's incoming QoS 2 state at every CONNECT and close: a clear
    // that finds nothing writes nothing, so a full disk does not keep clean sessions out
    if (failing() && await nothingIn(db, given)) return
    await guarded(async () => {
      if (fsync === 'batch') await syncedClear(db, given, async (chunk) => { await batch(chunk, options({ keyEncoding: given['keyEncoding'] })) })
      else await clear(given)
    })
  }
}

/** How a failed write failed, when the store should stop writing: classic-level reports leveldb's IOError as LEVEL_IO_ERROR. */
function failureKind (err: unknown): FailureKind | undefined {
  if ((err as { code?: unknown } | null)?.code !== 'LEVEL_IO_ERROR') return undefined
  return /no space left on device|disk quota exceeded/i.test(String((err as Error).message)) ? 'full' : 'io'
}

/** Whether the disk can take what reopening the database writes: its logs, as a table, and a new log and manifest. */
async function roomToReopen (location: string): Promise<boolean> {
  try {
    const logs = (await readdir(location)).filter((name) => name.endsWith('.log'))
    let needed = REOPEN_HEADROOM_BYTES
    for (const name of logs) needed += (await stat(join(location, name))).size
    const fs = await statfs(location)
    return fs.bavail * fs.bsize >= needed
  } catch {
    // cannot tell (the error that stopped the store may stop this too): try
    return true
  }
}

/**
 * Every sublevel of the database, as they attach to their parent on open:
 * closing the database closes them, and reopening it does not reopen them.
 */
function trackSublevels (db: Database): Array<AbstractSublevel<any, any, any, any>> {
  const sublevels: Array<AbstractSublevel<any, any, any, any>> = []
  const seen = new WeakSet<object>()
  const watch = (parent: { attachResource (resource: unknown): void }): void => {
    const attach = parent.attachResource.bind(parent)
    parent.attachResource = (resource) => {
      if (resource instanceof AbstractSublevel && !seen.has(resource)) {
        seen.add(resource)
        sublevels.push(resource)
        watch(resource as unknown as typeof parent)
      }
      attach(resource)
    }
  }
  watch(db as unknown as { attachResource (resource: unknown): void })
  return sublevels
}

/** Whether the range of a `_clear` holds no key. */
async function nothingIn (db: Database, given: WriteOptions): Promise<boolean> {
  // eslint-disable-next-line no-unreachable-loop -- one key is enough to know
  for await (const _key of db.keys({ ...rangeOf(given), limit: 1 } as object)) return false
  return true
}

/** The range options of a `_clear` call, as an iterator takes them. */
function rangeOf (given: WriteOptions): WriteOptions {
  const range: WriteOptions = { keyEncoding: given['keyEncoding'], reverse: given['reverse'] === true }
  for (const bound of ['gt', 'gte', 'lt', 'lte']) if (given[bound] !== undefined) range[bound] = given[bound]
  return range
}

/**
 * classic-level's native clear writes without sync whatever it is given
 * (binding.cc: `writeOptions_->sync = false`): with storage.fsync `batch`
 * the keys are deleted here instead, in synced batches.
 */
async function syncedClear (db: Database, given: WriteOptions, write: (chunk: Array<{ type: 'del', key: unknown }>) => Promise<void>): Promise<void> {
  const limit = typeof given['limit'] === 'number' && given['limit'] >= 0 ? given['limit'] : Infinity
  let deleted = 0
  let chunk: Array<{ type: 'del', key: unknown }> = []
  for await (const key of db.keys(rangeOf(given) as object)) {
    if (deleted >= limit) break
    chunk.push({ type: 'del', key })
    deleted++
    if (chunk.length === CLEAR_CHUNK) {
      await write(chunk)
      chunk = []
    }
  }
  if (chunk.length > 0) await write(chunk)
}
