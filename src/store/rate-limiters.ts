import { RateLimiterMemory, type RateLimiterAbstract } from 'rate-limiter-flexible'

/**
 * Where a node's rate limits count (`limits.connectRatePerIp`,
 * `http.rateLimit`, `http.authFailureLimit`): this process's memory on one
 * node (the default), or the cluster's Redis (store/redis/rate-limiters.ts),
 * so that an address's attempts count on every node together.
 */
export interface RateLimiters {
  /** A limiter of `points` per fixed window of `windowSec`; `name` keeps each limit's counts apart. */
  create (name: string, points: number, windowSec: number): RateLimiterAbstract
}

/** Counts in this process only: what one node does without a cluster. */
export const memoryRateLimiters: RateLimiters = {
  create: (_name, points, windowSec) => new RateLimiterMemory({ points, duration: windowSec }),
}
