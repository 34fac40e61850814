import type { FastifyInstance } from 'fastify'

export interface HealthState {
  /** True once every listener is up and the store is open; false again while stopping. */
  ready (): boolean
}

/** `/healthz`: the process answers. `/readyz`: listeners and store are ready for traffic. */
export function registerHealthRoutes (app: FastifyInstance, state: HealthState): void {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    if (state.ready()) return { status: 'ready' }
    return await reply.code(503).send({ error: { code: 'SERVER_UNAVAILABLE', message: 'not ready' } })
  })
}
