import type { FastifyInstance } from 'fastify'
import type { HttpContext } from '../context.js'

/** `/healthz`: the process answers. `/readyz`: listeners and store are ready for traffic. */
export function registerHealthRoutes (app: FastifyInstance, ctx: Pick<HttpContext, 'readiness'>): void {
  const unlimited = { config: { rateLimit: false }, schema: { hide: true } }
  app.get('/healthz', unlimited, async () => ({ status: 'ok' }))
  app.get('/readyz', unlimited, async () => {
    const problem = ctx.readiness()
    if (problem !== null) throw problem
    return { status: 'ready' }
  })
}
