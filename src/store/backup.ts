import { constants } from 'node:fs'
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { Level } from 'level'
import { HeraldError } from '../errors/index.js'
import type { Database } from './open-store.js'

/** What a backup wrote. */
export interface BackupResult {
  /** the backup directory: a data directory of its own (`<dir>/db`, and `<dir>/jwt-secret` when the broker has one) */
  readonly dir: string
  /** keys copied, every store's together */
  readonly entries: number
  /** bytes of keys and values copied */
  readonly bytes: number
  readonly startedAt: string
  readonly durationMs: number
}

/** Written last: a backup directory without it is not a complete backup. */
export const BACKUP_MANIFEST = 'herald-backup.json'
/** The generated secret of a broker without configured keys (cli/local-secret.ts): its tokens stay valid after a restore. */
const SECRET_FILE = 'jwt-secret'
/** Entries per write to the copy. */
const BATCH_ENTRIES = 1000
const BATCH_BYTES = 4 * 1024 * 1024

export interface BackupSource {
  /** the live database */
  readonly db: Database
  /** `dataDir`: where the database and the generated secret live */
  readonly dataDir: string
  /** resolves once every write acknowledged so far is in the database (SessionStorage.flush: the writes held behind) */
  readonly flush: () => Promise<void>
}

/**
 * An online backup of the whole store into `target`, a new directory (or an
 * empty one) on the broker's machine, made while the broker runs: every
 * write acknowledged before the call is in it (the writes held behind are
 * flushed first), and it is one consistent point in time, since one LevelDB
 * iterator reads from a snapshot taken when it is created: writes made while
 * the copy runs are not in it, whole.
 *
 * The copy is a LevelDB of its own in `<target>/db`, beside the generated
 * secret when the broker uses one, so `<target>` is a data directory: start a
 * broker with `dataDir` pointing at (a copy of) it, or `herald restore`.
 * A failed backup removes what it wrote.
 */
export async function backupStore (source: BackupSource, target: string): Promise<BackupResult> {
  if (!isAbsolute(target)) throw new HeraldError('INVALID_REQUEST', `dir: must be an absolute path on the broker's machine, not ${target}`)
  const dir = resolve(target)
  const live = resolve(source.dataDir, 'db')
  if (dir === live || !relative(live, dir).startsWith('..')) throw new HeraldError('INVALID_REQUEST', 'dir: must not be inside the live database directory')
  await claimEmptyDir(dir)
  const started = Date.now()
  try {
    await source.flush()
    const copied = await copyDatabase(source.db, join(dir, 'db'))
    await copySecret(source.dataDir, dir)
    const result: BackupResult = { dir, ...copied, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started }
    await writeFile(join(dir, BACKUP_MANIFEST), JSON.stringify({ format: 1, ...result }, null, 2) + '\n', { mode: 0o600 })
    return result
  } catch (err) {
    await rm(dir, { recursive: true, force: true }).catch(() => {})
    if (err instanceof HeraldError) throw err
    // the live store closed meanwhile (the broker stops, or heals a full disk): worth trying again
    if ((err as { code?: unknown }).code === 'LEVEL_DATABASE_NOT_OPEN') throw new HeraldError('SERVER_UNAVAILABLE', 'the store closed during the backup; retry', { cause: err })
    throw new HeraldError('INVALID_REQUEST', `dir: the backup could not be written: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Puts a backup in place as the store of `dataDir`, with no broker running
 * on it: refuses a data directory that holds a store already (move it away
 * first), and a backup that never completed.
 */
export async function restoreStore (backupDir: string, dataDir: string): Promise<{ entries: number, bytes: number }> {
  const from = resolve(backupDir)
  try {
    await stat(join(from, BACKUP_MANIFEST))
  } catch {
    throw new Error(`${from} is not a complete Herald backup (no ${BACKUP_MANIFEST})`)
  }
  const to = resolve(dataDir)
  if (await exists(join(to, 'db'))) throw new Error(`${join(to, 'db')} exists: move the data directory's store away first (restore never overwrites one)`)
  await mkdir(to, { recursive: true, mode: 0o700 })
  const source = new Level<Buffer, Buffer>(join(from, 'db'), { keyEncoding: 'buffer', valueEncoding: 'buffer', createIfMissing: false })
  await source.open()
  try {
    const copied = await copyDatabase(source as unknown as Database, join(to, 'db'))
    // a secret already in the data directory is kept: it may be the one this broker's tokens are signed with
    if (!await exists(join(to, SECRET_FILE))) await copySecret(from, to)
    return copied
  } finally {
    await source.close()
  }
}

/** Copies every key of `source`, from one snapshot, into a new LevelDB at `location`. */
async function copyDatabase (source: Database, location: string): Promise<{ entries: number, bytes: number }> {
  const copy = new Level<Buffer, Buffer>(location, { keyEncoding: 'buffer', valueEncoding: 'buffer', errorIfExists: true })
  await copy.open()
  let entries = 0
  let bytes = 0
  try {
    let batch: Array<{ type: 'put', key: Buffer, value: Buffer }> = []
    let batchBytes = 0
    // one iterator: it reads from the snapshot taken when it was created
    const iterator = source.iterator({ keyEncoding: 'buffer', valueEncoding: 'buffer' } as object) as unknown as AsyncIterable<[Buffer, Buffer]>
    for await (const [key, value] of iterator) {
      batch.push({ type: 'put', key, value })
      batchBytes += key.length + value.length
      entries++
      if (batch.length >= BATCH_ENTRIES || batchBytes >= BATCH_BYTES) {
        await copy.batch(batch)
        bytes += batchBytes
        batch = []
        batchBytes = 0
      }
    }
    // the last write is synced, and with it the log of every write before it
    await copy.batch(batch, { sync: true })
    bytes += batchBytes
  } finally {
    await copy.close()
  }
  return { entries, bytes }
}

async function copySecret (fromDir: string, toDir: string): Promise<void> {
  try {
    await copyFile(join(fromDir, SECRET_FILE), join(toDir, SECRET_FILE), constants.COPYFILE_EXCL)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** Creates `dir` (owner only: it holds every session and maybe the secret), or takes an empty one; anything else is ALREADY_EXISTS. */
async function claimEmptyDir (dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    if ((await readdir(dir)).length > 0) throw new HeraldError('ALREADY_EXISTS', `dir: ${dir} is not empty: a backup goes into a new or empty directory`)
  } catch (err) {
    if (err instanceof HeraldError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTDIR' || code === 'EEXIST') throw new HeraldError('ALREADY_EXISTS', `dir: ${dir} exists and is not a directory`, { cause: err })
    throw new HeraldError('INVALID_REQUEST', `dir: cannot create ${dir}: ${(err as Error).message}`, { cause: err })
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** The manifest of a complete backup, or undefined (tests, the CLI). */
export async function readBackupManifest (dir: string): Promise<(BackupResult & { format: number }) | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, BACKUP_MANIFEST), 'utf8')) as BackupResult & { format: number }
  } catch {
    return undefined
  }
}
