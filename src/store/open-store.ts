import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'

export type Database = Level<string, unknown>

/**
 * One LevelDB per data directory. aedes' session store and Herald's own stores
 * are sublevels of it, so a single directory holds all state.
 */
export async function openDatabase (dataDir: string): Promise<Database> {
  await mkdir(dataDir, { recursive: true })
  const db = new Level<string, unknown>(join(dataDir, 'db'), { valueEncoding: 'json' })
  await db.open()
  return db
}
