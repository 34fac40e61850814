import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import { Ajv } from 'ajv'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import { HeraldError } from '../errors/index.js'
import { createAuthFailureLimiter } from './auth-failure-limiter.js'
import { registerConsole } from './console.js'
import { bearerAuth } from './auth.js'
import { httpServerTimeouts, limitConnectionsPerIp } from './connection-limits.js'
import type { HttpContext } from './context.js'
import { ErrorBody, sendError, toHeraldError } from './errors.js'
import { rateLimitStore } from './rate-limit-store.js'
import { registerAdminRoutes } from './routes/admin.js'
import { registerBucketRoutes } from './routes/buckets.js'
import { registerHealthRoutes } from './routes/health.js'
import { registerInstallationRoutes } from './routes/installations.js'
import { registerMetricsRoute } from './routes/metrics.js'
import { registerPublishRoutes } from './routes/publish.js'
import { registerPushRoutes } from './routes/push.js'
import { registerSubscriptionRoutes } from './routes/subscriptions.js'
import { registerTopicRoutes } from './routes/topics.js'

export interface HttpAppOptions {
  /** Present for the HTTPS listener. */
  readonly https?: { readonly cert: Buffer, readonly key: Buffer }
}

// Bodies are validated strictly: unknown keys and wrong types are errors, never
// stripped or coerced. Path and query strings are text and may be coerced.
const bodyAjv = new Ajv({ allErrors: false, removeAdditional: false, coerceTypes: false, useDefaults: false, strict: false })
const textAjv = new Ajv({ allErrors: false, removeAdditional: false, coerceTypes: true, useDefaults: true, strict: false })

/** The HTTP API; the MQTT-over-WebSocket endpoint is attached to the same server. */
export async function buildHttpApp (ctx: HttpContext, options: HttpAppOptions = {}): Promise<FastifyInstance> {
  const app = createFastify(ctx, options)

  acceptJsonBodiesOnly(app)
  app.setErrorHandler(async (err, request, reply) => {
    // a request that failed because the store was lost meanwhile gets what the requests after it get: 503, not 500
    const error = toHeraldError(err)
    const lost = error.code === 'INTERNAL_ERROR' ? ctx.unavailable?.() ?? null : null
    await sendError(lost ?? error, request, reply)
  })
  app.setNotFoundHandler(async () => { throw new HeraldError('NOT_FOUND', 'no such route') })
  app.addHook('onResponse', async (request, reply) => {
    // the route pattern, never the raw URL: one series per route, whatever ids are in the path
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) }
    ctx.metrics.httpRequests.inc(labels)
    ctx.metrics.httpRequestDuration.observe(labels, reply.elapsedTime / 1000)
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Herald HTTP API', version: ctx.version },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
    },
    // every /v1 refusal is the one error body (errors.ts): documented here for all operations, not on each route
    transform: ({ schema, url }) => ({
      schema: url.startsWith('/v1/') ? { ...schema, response: { ...schema.response as object, '4xx': ErrorBody, '5xx': ErrorBody } } : schema,
      url,
    }),
  })
  await app.register(rateLimit, {
    max: ctx.config.http.rateLimit.max,
    timeWindow: ctx.config.http.rateLimit.windowSec * 1000,
    // in a cluster, counted across the nodes (rate-limit-store.ts); otherwise the plugin's in-memory store
    ...(ctx.rateLimiters !== undefined && { store: rateLimitStore(ctx.rateLimiters, 'http') }),
    errorResponseBuilder: () => new HeraldError('RATE_LIMITED'),
  })

  registerHealthRoutes(app, ctx)
  registerMetricsRoute(app, ctx)
  app.get('/v1/openapi.json', { schema: { hide: true }, config: { rateLimit: false } }, async () => app.swagger())
  registerConsole(app)

  await registerV1Api(app, ctx)
  return app
}

/** The fastify instance with its timeouts, per-IP connection limit and timeout count. */
function createFastify (ctx: HttpContext, options: HttpAppOptions): FastifyInstance {
  // fastify's own defaults never time a request out (requestTimeout 0): a body trickled a byte at a time held its socket for ever
  const timeouts = httpServerTimeouts(ctx.config.http)
  const app = Fastify({
    loggerInstance: ctx.logger.child({ component: 'http' }),
    // one log line per request would drown the broker's own logs; metrics count requests instead
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.config.http.bodyLimitBytes,
    // fastify answers 414 for a path parameter over 100 characters; ids may have 128 (percent-encoded: more)
    routerOptions: { maxParamLength: 1024 },
    // fastify sets these two on the server after creating it; the server options below must agree
    requestTimeout: timeouts.requestTimeout,
    keepAliveTimeout: timeouts.keepAliveTimeout,
    ...(options.https !== undefined
      ? { https: { ...options.https, ...timeouts, handshakeTimeout: timeouts.headersTimeout } }
      : { http: timeouts }),
  }) as unknown as FastifyInstance
  limitConnectionsPerIp(app.server, ctx.config.http.maxConnectionsPerIp, () => ctx.metrics.httpConnectionsRefused.inc())
  // counted only: fastify's clientError handler answers 408 and closes the socket
  app.server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') ctx.metrics.httpRequestTimeouts.inc()
  })
  return app
}

/** Strict validation of bodies, coercion of path and query strings, and JSON as the only body type. */
function acceptJsonBodiesOnly (app: FastifyInstance): void {
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema))
  // fastify parses text/plain by default; every body of this API is JSON, anything else is 415
  app.removeContentTypeParser('text/plain')
  // An empty body is no body, whatever its Content-Type: fetch wrappers, axios defaults and many SDKs send
  // `Content-Type: application/json` on every request, DELETE included, and fastify's JSON parser refuses
  // an empty one (FST_ERR_CTP_EMPTY_JSON_BODY). Anything else must still be JSON.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body: string, done) => {
    if (body.length === 0) done(null, undefined)
    // fastify's default parser is synchronous and answers through `done`
    else void parseJson(request, body, done)
  })
}

/** The authenticated API under /v1: answered 503 while the cluster's Redis is lost, rate-limited, then authenticated. */
async function registerV1Api (app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const authenticate = bearerAuth({
    verifier: ctx.verifier,
    failures: createAuthFailureLimiter(ctx.config.http.authFailureLimit.max, ctx.config.http.authFailureLimit.windowSec, ctx.rateLimiters),
    onFailure: (error) => ctx.metrics.authFailures.inc({ transport: 'http', code: error.code }),
    onLimited: () => ctx.metrics.httpAuthRateLimited.inc(),
  })
  await app.register(async (api) => {
    // A node that lost the cluster's Redis answers 503 at once: before the rate limit and the token
    // check (both may count in Redis) and the route, which would wait for Redis to time out.
    const unavailable = ctx.unavailable
    if (unavailable !== undefined) {
      api.addHook('onRequest', async () => {
        const problem = unavailable()
        if (problem !== null) throw problem
      })
    }
    // Not api.addHook('onRequest'): @fastify/rate-limit puts its check among each route's own onRequest
    // hooks, and fastify runs those after the instance's, so a request refused 401 was never counted by
    // http.rateLimit. Appended here, in an onRoute hook that runs after the plugin's, auth comes after it.
    api.addHook('onRoute', (route) => {
      const hooks = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
      route.onRequest = [...hooks, authenticate]
    })
    registerPublishRoutes(api, ctx)
    registerPushRoutes(api, ctx)
    registerInstallationRoutes(api, ctx)
    registerSubscriptionRoutes(api, ctx)
    registerTopicRoutes(api, ctx)
    registerBucketRoutes(api, ctx)
    registerAdminRoutes(api, ctx)
  }, { prefix: '/v1' })
}
