import { memoryRateLimiters, type RateLimiters } from '../store/rate-limiters.js'

/** CONNECT attempts per IP address within a fixed window (`limits.connectRatePerIp`). */
export interface ConnectLimiter {
  /** Resolves true when the attempt is within the limit. */
  tryConnect (ip: string): Promise<boolean>
}

/**
 * Counts in this process by default; with a cluster's `limiters`
 * (store/redis/rate-limiters.ts) an address's CONNECTs to every node count
 * together, and per node while Redis is unreachable.
 */
export function createConnectLimiter (points: number, windowSec: number, limiters: RateLimiters = memoryRateLimiters): ConnectLimiter {
  const limiter = limiters.create('connect', points, windowSec)
  return {
    async tryConnect (ip) {
      try {
        await limiter.consume(ip)
        return true
      } catch (rejection) {
        // rate-limiter-flexible rejects with a RateLimiterRes when over the limit, an Error otherwise
        if (rejection instanceof Error) throw rejection
        return false
      }
    },
  }
}
