import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible'
import type { RateLimiters } from '../rate-limiters.js'
import type { RedisConnection } from './connection.js'

/**
 * Rate limits shared by the nodes of a cluster: each limit's counts live in
 * Redis under `rl:<name>:<key>` (after `cluster.keyPrefix`, which ioredis
 * applies), incremented by one Lua script per attempt, so an address gets
 * `points` per window across all nodes together.
 *
 * While Redis is unreachable each limiter counts in this node's memory
 * instead (rate-limiter-flexible's insurance limiter, used at once when the
 * client is not connected rather than after a command times out): a Redis
 * outage neither refuses every attempt nor lifts the limits, it makes them
 * per node, as without a cluster. Counts made in memory stay there; when
 * Redis is back, counting resumes on what Redis holds.
 */
export function redisRateLimiters (conn: RedisConnection): RateLimiters {
  return {
    create: (name, points, windowSec) => new RateLimiterRedis({
      storeClient: conn.client,
      keyPrefix: `rl:${name}`,
      points,
      duration: windowSec,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ points, duration: windowSec }),
    }),
  }
}
