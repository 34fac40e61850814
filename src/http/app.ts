import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { HeraldError } from '../errors/index.js'
import { registerHealthRoutes, type HealthState } from './routes/health.js'

export interface HttpAppOptions {
  readonly logger: Logger
  readonly health: HealthState
  /** Present for the HTTPS listener. */
  readonly https?: { readonly cert: Buffer, readonly key: Buffer }
}

/** The HTTP API; the MQTT-over-WebSocket endpoint is attached to the same server. */
export function buildHttpApp (options: HttpAppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger.child({ component: 'http' }),
    // one log line per request would drown the broker's own logs; metrics count requests instead
    logController: new LogController({ disableRequestLogging: true }),
    ...(options.https !== undefined && { https: options.https }),
  }) as unknown as FastifyInstance
  registerHealthRoutes(app, options.health)
  app.setNotFoundHandler(async (_request, reply) => {
    const error = new HeraldError('NOT_FOUND', 'no such route')
    return await reply.code(error.status).send({ error: { code: error.code, message: error.message } })
  })
  return app
}
