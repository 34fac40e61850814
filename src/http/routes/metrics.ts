import type { FastifyInstance } from 'fastify'
import type { HttpContext } from '../context.js'

/** Prometheus exposition at `/metrics` (unauthenticated, like most exporters: keep the port internal or filter it). */
export function registerMetricsRoute (app: FastifyInstance, ctx: Pick<HttpContext, 'metrics'>): void {
  app.get('/metrics', { config: { rateLimit: false }, schema: { hide: true } }, async (_request, reply) => {
    const body = await ctx.metrics.registry.metrics()
    return await reply.type(ctx.metrics.registry.contentType).send(body)
  })
}
