import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbstractLevel } from 'abstract-level'
import { Level } from 'level'
import { MemoryLevel } from 'memory-level'

/** LevelDB on disk or its in-memory twin: the same abstract-level API, so every store works on either. */
export type Database = AbstractLevel<string | Buffer | Uint8Array, string, unknown>

export type StorageEngine = 'leveldb' | 'memory'

/**
 * One database per data directory. aedes' session store and Herald's own
 * stores are sublevels of it, so a single directory holds all state.
 * `memory` keeps nothing after the process ends: what the benchmark uses to
 * tell what persistence costs, and what a throwaway broker needs.
 */
export async function openDatabase (dataDir: string, engine: StorageEngine = 'leveldb'): Promise<Database> {
  const db: Database = engine === 'memory'
    ? new MemoryLevel<string, unknown>({ valueEncoding: 'json' })
    : new Level<string, unknown>(await databaseDir(dataDir), { valueEncoding: 'json' })
  await db.open()
  return db
}

async function databaseDir (dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true })
  return join(dataDir, 'db')
}
