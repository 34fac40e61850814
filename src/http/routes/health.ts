import type { FastifyInstance } from 'fastify'
import { HeraldError } from '../../errors/index.js'
import type { HttpContext } from '../context.js'

/** `/healthz`: the process answers. `/readyz`: listeners and store are ready for traffic. */
export function registerHealthRoutes (app: FastifyInstance, ctx: Pick<HttpContext, 'ready'>): void {
  const unlimited = { config: { rateLimit: false }, schema: { hide: true } }
  app.get('/healthz', unlimited, async () => ({ status: 'ok' }))
  app.get('/readyz', unlimited, async () => {
    if (!ctx.ready()) throw new HeraldError('SERVER_UNAVAILABLE', 'not ready')
    return { status: 'ready' }
  })
}
