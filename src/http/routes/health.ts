import type { FastifyInstance } from 'fastify'
import type { HttpContext } from '../context.js'

/**
 * `/healthz`: the process answers. `/readyz`: listeners and store are ready
 * for traffic, and the store takes a write now (a probe write, at most one a
 * second: store/write-probe.ts), not only "no write has failed yet".
 */
export function registerHealthRoutes (app: FastifyInstance, ctx: Pick<HttpContext, 'readiness' | 'storage'>): void {
  const unlimited = { config: { rateLimit: false }, schema: { hide: true } }
  app.get('/healthz', unlimited, async () => ({ status: 'ok' }))
  app.get('/readyz', unlimited, async () => {
    const problem = ctx.readiness()
    if (problem !== null) throw problem
    await ctx.storage.probeWrite()
    return { status: 'ready' }
  })
}
