import { RateLimiterMemory } from 'rate-limiter-flexible'

/** CONNECT attempts per IP address within a sliding window (`limits.connectRatePerIp`). */
export interface ConnectLimiter {
  /** Resolves true when the attempt is within the limit. */
  tryConnect (ip: string): Promise<boolean>
}

export function createConnectLimiter (points: number, windowSec: number): ConnectLimiter {
  const limiter = new RateLimiterMemory({ points, duration: windowSec })
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
