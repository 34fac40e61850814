import { openDatabase, type Database } from '../../src/store/open-store.js'
import { openRedisConnection, type RedisConnection } from '../../src/store/redis/connection.js'
import { makeTempDir, type Teardown } from './broker.js'
import type { TestRedis } from './redis.js'

/**
 * What the directory stores' contract tests (test/contracts/*) open their
 * stores on: a LevelDB in a temp dir, or connections to a test's own
 * redis-server, several of them standing for several nodes.
 */

/** A LevelDB in a temp dir, closed at teardown; `reopen` closes it and opens it again (a restart). */
export async function tempDatabase (t: Teardown): Promise<{ db: () => Database, reopen: () => Promise<Database> }> {
  const dir = await makeTempDir(t)
  let db = await openDatabase(dir)
  t.teardown(async () => await db.close())
  return {
    db: () => db,
    async reopen () {
      await db.close()
      db = await openDatabase(dir)
      return db
    },
  }
}

let prefixes = 0

/** A key prefix of its own for each test, so tests sharing one redis-server never see each other's keys. */
export function freshPrefix (): string {
  return `t${++prefixes}-${process.pid}:`
}

/** A node's connection (closed at teardown); nodes of one deployment share the prefix. */
export async function nodeConnection (t: Teardown, redis: TestRedis, keyPrefix: string): Promise<RedisConnection> {
  const conn = await openRedisConnection({ url: redis.url, keyPrefix })
  t.teardown(async () => await conn.close())
  return conn
}
