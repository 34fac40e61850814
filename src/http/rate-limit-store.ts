import type { FastifyRateLimitOptions, FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { RateLimiterAbstract } from 'rate-limiter-flexible'
import type { RateLimiters } from '../store/rate-limiters.js'

/**
 * A store for @fastify/rate-limit (`http.rateLimit`) that counts through
 * `limiters`: in a cluster, the Redis one, so an address's requests to every
 * node count together.
 *
 * Not the plugin's own `redis` option: with it a lost Redis either fails
 * every request (500) or, with `skipOnError`, lifts the limit altogether.
 * rate-limiter-flexible's limiters count in the node's memory while Redis is
 * away (store/redis/rate-limiters.ts), so the limit becomes per node, as
 * without a cluster. Without a cluster, app.ts keeps the plugin's own
 * in-memory store.
 */
export function rateLimitStore (limiters: RateLimiters, name: string): FastifyRateLimitStoreCtor {
  class LimiterStore implements FastifyRateLimitStore {
    private readonly limiter: RateLimiterAbstract
    constructor (options: FastifyRateLimitOptions, private readonly prefix = name) {
      // the plugin hands its store the window in milliseconds; Herald's windows are whole seconds
      const { max, timeWindow } = options as { max?: unknown, timeWindow?: unknown }
      if (typeof max !== 'number' || typeof timeWindow !== 'number') throw new Error('the HTTP rate limit needs a fixed max and timeWindow')
      this.limiter = limiters.create(prefix, max, Math.max(1, Math.ceil(timeWindow / 1000)))
    }

    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void): void {
      // penalty counts without refusing: the plugin compares the count with max itself
      this.limiter.penalty(key, 1).then(
        (res) => callback(null, { current: res.consumedPoints, ttl: res.msBeforeNext }),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))))
    }

    read (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void): void {
      this.limiter.get(key).then(
        (res) => callback(null, res === null ? { current: 0, ttl: 0 } : { current: res.consumedPoints, ttl: res.msBeforeNext }),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))))
    }

    child (routeOptions: Parameters<FastifyRateLimitStore['child']>[0]): FastifyRateLimitStore {
      // a route with a limit of its own counts apart from the others
      const route = routeOptions as unknown as FastifyRateLimitOptions & { routeInfo: { method: string, url: string } }
      return new LimiterStore(route, `${this.prefix}:${route.routeInfo.method}${route.routeInfo.url}`)
    }
  }
  return LimiterStore
}
