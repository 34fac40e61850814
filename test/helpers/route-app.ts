import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import type { Test } from 'tap'
import { createAcl } from '../../src/acl/index.js'
import { createTokenVerifier } from '../../src/auth/index.js'
import { openBackend } from '../../src/backend/open.js'
import type { StorageBackend } from '../../src/backend/backend.js'
import { createBroker, type Broker } from '../../src/broker/create-broker.js'
import { errorCodes, type ErrorCode } from '../../src/errors/index.js'
import { loadConfig, type HeraldConfig } from '../../src/config/index.js'
import { buildHttpApp } from '../../src/http/app.js'
import type { HttpContext } from '../../src/http/context.js'
import { createMetrics } from '../../src/metrics/metrics.js'
import { createRelayGateway } from '../../src/relay/gateway.js'
import { makeTempDir, TEST_SECRET, type Teardown } from './broker.js'

/**
 * The HTTP API without a socket: `buildHttpApp` over the real stores (a
 * LevelDB in a temp dir), a real aedes broker with no listener behind its
 * BrokerPort, and the relay without senders. Requests go through fastify's
 * `inject()`. For tests of what a route answers; anything that needs a
 * connection (MQTT clients, timeouts, connection limits) uses startBroker.
 */
export interface RouteApp {
  readonly app: FastifyInstance
  readonly config: HeraldConfig
  readonly ctx: HttpContext
  /** The aedes broker behind ctx.broker (no listener: a test hands it connections itself). */
  readonly broker: Broker
  /** The stores behind the routes, to set up what no route makes (a relay dead letter). */
  readonly backend: StorageBackend
  call (method: string, url: string, options?: CallOptions): Promise<RouteResponse>
}

export interface CallOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string
  /** JSON-encoded unless a string. */
  readonly body?: unknown
  readonly headers?: Record<string, string>
}

export interface RouteResponse {
  readonly status: number
  readonly headers: Record<string, string | string[] | number | undefined>
  /** Parsed JSON; undefined for an empty body; the text when it is not JSON. */
  readonly body: any
  readonly text: string
}

/** The public ports a created installation is told about (nothing listens in these tests). */
const PORTS = { mqtt: 1883, mqtts: null, ws: 8080, wss: null }

export async function buildRouteApp (t: Teardown, overrides: Record<string, unknown> = {}): Promise<RouteApp> {
  const dataDir = await makeTempDir(t)
  const config = loadConfig({
    env: {},
    overrides: {
      ...overrides,
      dataDir,
      log: { level: 'silent' },
      auth: { jwt: { keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] } },
    },
  })
  const logger = pino({ level: 'silent' })
  const backend = await openBackend(config, logger)
  const { appTopics, installations, clientIds, principals, buckets } = backend
  const verifier = principals.watch(createTokenVerifier(config.auth.jwt))
  const acl = createAcl({ rules: config.acl.rules, anonymousGrants: config.auth.anonymous.acl, appTopics, appBuckets: buckets })
  const broker = await createBroker({ config, sessions: backend.sessions, verifier, acl, clientIds, logger })
  const relay = createRelayGateway({ config, logger, installations, principals, acl, broker: broker.port, store: backend.relayOutbox, senders: [] })
  const metrics = createMetrics({
    connectedClients: () => broker.connections.size,
    relayOutboxDepth: () => relay.depth,
    storageWritable: () => backend.problem() === null ? 1 : 0,
    openFiles: () => ({ limit: null, open: null }),
    pendingConnects: () => 0,
    queueTotals: async () => await backend.queues.totals(),
    deadLetters: async () => await relay.deadLetters.count(),
  })
  await relay.start()
  await buckets.start(broker.port, logger)
  const ctx: HttpContext = {
    config, version: '0.0.0-test', logger, verifier, acl, broker: broker.port, installations, principals, appTopics, buckets, clientIds, metrics, relay,
    storage: backend,
    readiness: () => backend.problem(),
    ports: () => PORTS,
  }
  const app = await buildHttpApp(ctx)
  await app.ready()
  t.teardown(async () => {
    await app.close()
    await broker.close()
    await relay.close()
    await backend.close()
  })

  return {
    app,
    config,
    ctx,
    broker,
    backend,
    async call (method, url, options = {}) {
      const headers: Record<string, string> = { ...options.headers }
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
      let payload: string | undefined
      if (options.body !== undefined) {
        payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body)
        headers['content-type'] ??= 'application/json'
      }
      const response = await app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined && { payload }) })
      return { status: response.statusCode, headers: response.headers, body: parse(response.body), text: response.body }
    },
  }
}

function parse (text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** An error answer: the status the code table gives its code, JSON, and `{error: {code, message}}` only. */
export function assertError (t: Test, response: RouteResponse, code: ErrorCode, what: string): void {
  t.equal(response.status, errorCodes[code].status, `${what}: ${errorCodes[code].status}`)
  t.match(String(response.headers['content-type'] ?? ''), /^application\/json/, `${what}: JSON`)
  t.strictSame(Object.keys(response.body ?? {}), ['error'], `${what}: only an error member`)
  t.strictSame(Object.keys(response.body?.error ?? {}).sort(), ['code', 'message'], `${what}: a code and a message`)
  t.equal(response.body?.error?.code, code, `${what}: ${code}`)
}
