import { QUEUE_TOTALS_MAX_AGE_MS, reuseFor, type QueueInspector } from '../queue-inspector.js'
import type { RedisConnection } from './connection.js'
import { QUEUES_KEY, queueKey } from './session-keys.js'

/** Queue lengths asked per pipeline while counting every queue. */
const CHUNK = 500

/**
 * The queues of the Redis session store (redis/session-queues.ts), shared by
 * every node: a depth is one LLEN; the totals walk the set of clients with a
 * queue and read each queue's length (one pipeline per 500), reused for
 * `maxAgeMs`. Every node reports the same cluster-wide totals.
 */
export function redisQueueInspector (conn: RedisConnection, maxAgeMs = QUEUE_TOTALS_MAX_AGE_MS): QueueInspector {
  const client = conn.client
  return {
    depth: async (clientId) => await client.llen(queueKey(clientId)),
    totals: reuseFor(maxAgeMs, async () => {
      let sessions = 0
      let messages = 0
      let cursor = '0'
      // SSCAN may return a member twice
      const seen = new Set<string>()
      do {
        const [next, found] = await client.sscan(QUEUES_KEY, cursor, 'COUNT', CHUNK)
        cursor = next
        const clientIds = found.filter((clientId) => !seen.has(clientId))
        for (const clientId of clientIds) seen.add(clientId)
        if (clientIds.length === 0) continue
        const pipeline = client.pipeline()
        for (const clientId of clientIds) pipeline.llen(queueKey(clientId))
        for (const [err, length] of await pipeline.exec() ?? []) {
          if (err !== null) throw err
          if (Number(length) > 0) {
            sessions++
            messages += Number(length)
          }
        }
      } while (cursor !== '0')
      return { sessions, messages }
    }),
  }
}
