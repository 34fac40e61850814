import { randomUUID } from 'node:crypto'
import type { SessionActivityStore } from '../session-activity.js'
import type { RedisConnection } from './connection.js'

const HASH = 'session-activity'
const LOCK = 'session-expiry:lock'

// KEYS: the lock; ARGV: this holder's token. Releases the lock only if it is still ours.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

/**
 * Session activity of a cluster: one hash (client id → last seen, ms) that
 * every node writes when one of its connections closes, and a lock so that
 * one node sweeps at a time: the lock lasts as long as a sweep interval, so
 * a node that dies while sweeping holds it no longer than that.
 */
export function redisSessionActivity (conn: RedisConnection): SessionActivityStore {
  const { client } = conn
  return {
    shared: true,
    async loadAll () {
      const all = new Map<string, number>()
      for (const [clientId, at] of Object.entries(await client.hgetall(HASH))) {
        const value = Number(at)
        if (Number.isFinite(value)) all.set(clientId, value)
      }
      return all
    },
    async get (clientId) {
      const at = await client.hget(HASH, clientId)
      return at === null ? undefined : Number(at)
    },
    put: async (clientId, at) => { await client.hset(HASH, clientId, String(at)) },
    delete: async (clientId) => { await client.hdel(HASH, clientId) },
    async exclusive (sweepMs, run) {
      const token = randomUUID()
      if (await client.set(LOCK, token, 'PX', Math.max(1000, sweepMs), 'NX') === null) return undefined
      try {
        return await run()
      } finally {
        await client.eval(RELEASE, 1, LOCK, token)
      }
    },
  }
}
