import { memoryRateLimiters, type RateLimiters } from '../store/rate-limiters.js'

/**
 * Failed HTTP authentications per client IP within a fixed window
 * (`http.authFailureLimit`). Verifying an RS256/ES256 signature costs the
 * server CPU and a forged token costs the sender nothing, so once an address
 * has failed `max` times in the window, its requests are refused before any
 * token is verified, until the window ends. With a cluster's `limiters` the
 * failures at every node count together (store/redis/rate-limiters.ts).
 */
export interface AuthFailureLimiter {
  /** Milliseconds until `ip` may authenticate again; 0 when it may now. */
  blockedFor (ip: string): Promise<number>
  /** Counts one failed authentication of `ip`. */
  failed (ip: string): Promise<void>
}

export function createAuthFailureLimiter (max: number, windowSec: number, limiters: RateLimiters = memoryRateLimiters): AuthFailureLimiter {
  const limiter = limiters.create('auth-failure', max, windowSec)
  return {
    async blockedFor (ip) {
      const state = await limiter.get(ip)
      return state !== null && state.consumedPoints >= max ? Math.max(state.msBeforeNext, 1) : 0
    },
    async failed (ip) {
      // penalty adds a point without rejecting, where consume would reject past the limit
      await limiter.penalty(ip, 1)
    },
  }
}
