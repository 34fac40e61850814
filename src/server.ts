import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import type { Server as NetServer } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { WebSocketServer } from 'ws'
import { createAcl } from './acl/index.js'
import type { StorageBackend } from './backend/backend.js'
import { openBackend } from './backend/open.js'
import { clusterNodeId } from './backend/redis.js'
import { HeraldError } from './errors/index.js'
import { createLogger, enabledProviders, listenerUrls } from './logger.js'
import { createTokenVerifier } from './auth/index.js'
import { watchConnectionEvents } from './broker/connection-events.js'
import { createBroker, type Broker } from './broker/create-broker.js'
import { applySessionLimits, type SessionLimits } from './broker/session-limits.js'
import type { HeraldConfig } from './config/index.js'
import { buildHttpApp } from './http/app.js'
import type { HttpContext, PublicPorts } from './http/context.js'
import { createMetrics } from './metrics/metrics.js'
import { createRelayGateway, type RelayGateway } from './relay/gateway.js'
import { createSenders } from './relay/senders.js'
import { GuardedStream } from './transport/guarded-stream.js'
import { maxConnectBytes, PendingConnects } from './transport/pre-auth.js'
import { ConnectionBudget, readOpenFiles } from './transport/connection-budget.js'
import { closeServer, listen } from './transport/listen.js'
import { createTcpTransport } from './transport/tcp.js'
import { createTlsTransport } from './transport/tls.js'
import { attachWebSocketTransport } from './transport/ws.js'
import type { Database } from './store/open-store.js'
import { heraldVersion } from './version.js'

/** The ports actually bound (the chosen ones where the config said 0). */
export interface ListeningPorts {
  readonly mqtt: number
  readonly http: number
  readonly mqtts: number | null
  readonly https: number | null
}

export interface HeraldServer {
  start (): Promise<ListeningPorts>
  /** Stops accepting, closes every client, flushes and closes the store. */
  stop (): Promise<void>
  /** Present between start() and stop(); for tests. */
  readonly broker: Broker | undefined
  readonly relay: RelayGateway | undefined
}

export interface ServerOptions {
  readonly logger?: Logger
  /** Called with the LevelDB once it is open, before Herald wraps or uses it: tests observe its writes. */
  readonly onDatabaseOpen?: (db: Database) => void
  /** The clock session expiry (`limits.sessionExpirySec`) reads; tests move it. */
  readonly now?: () => number
}

export function buildServer (config: HeraldConfig, options: ServerOptions = {}): HeraldServer {
  // in a cluster, every log line and metric names its node
  const nodeId = config.cluster.redis.url === null ? undefined : clusterNodeId(config, cluster.worker?.id)
  const logger = options.logger ?? createLogger(config, { name: 'herald', ...(nodeId !== undefined && { node: nodeId }) })
  const host = config.listen.host
  let ready = false
  let backend: StorageBackend | undefined
  let budget: ConnectionBudget | undefined
  let pending: PendingConnects | undefined
  let broker: Broker | undefined
  let sessionLimits: SessionLimits | undefined
  let gateway: RelayGateway | undefined
  let ports: ListeningPorts = { mqtt: 0, http: 0, mqtts: null, https: null }
  const netServers: NetServer[] = []
  const httpApps: FastifyInstance[] = []
  const webSocketServers: WebSocketServer[] = []

  function handleConnection (stream: Duplex, remoteAddress: string | undefined, onConnect?: () => void): void {
    // until its CONNECT is in, a connection counts against its address's limits.maxPendingConnectsPerIp
    if (broker === undefined || pending === undefined || !pending.admit(remoteAddress)) {
      stream.destroy()
      return
    }
    broker.aedes.handle(new GuardedStream(stream, config.limits.maxPacketBytes, remoteAddress, pending, onConnect))
  }

  async function startHttp (ctx: HttpContext, port: number, tls?: { cert: Buffer, key: Buffer }): Promise<number> {
    const app = await buildHttpApp(ctx, tls !== undefined ? { https: tls } : {})
    httpApps.push(app)
    budget?.watch(app.server, 'http')
    // an MQTT packet may be split over several WebSocket messages; one message never needs more than a packet
    webSocketServers.push(attachWebSocketTransport(app.server, {
      path: config.http.wsPath,
      maxPayload: config.limits.maxPacketBytes,
      maxConnectPayload: maxConnectBytes(config),
    }, handleConnection))
    await app.listen({ port, host })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('HTTP listener has no TCP address')
    return address.port
  }

  return {
    get broker () { return broker },
    get relay () { return gateway },

    async start () {
      const tokens = createTokenVerifier(config.auth.jwt)
      backend = await openBackend(config, logger, { ...options, ...(nodeId !== undefined && { nodeId }) })
      const { appTopics, installations, clientIds, principals, buckets } = backend
      // a node that lost the cluster's Redis refuses CONNECTs and /v1 requests at once instead of waiting for it
      const unavailable = (): HeraldError | null => {
        const problem = backend?.problem() ?? null
        return problem?.code === 'STORE_UNREACHABLE' ? problem : null
      }
      // every token accepted, at MQTT CONNECT or on an HTTP call, tells who its user is now (the relay's ACL)
      const verifier = principals.watch(tokens)
      const acl = createAcl({ rules: config.acl.rules, anonymousGrants: config.auth.anonymous.acl, appTopics, appBuckets: buckets })
      const metrics = createMetrics({
        connectedClients: () => broker?.connections.size ?? 0,
        relayOutboxDepth: () => gateway?.depth ?? 0,
        storageWritable: () => backend?.problem() === null ? 1 : 0,
        openFiles: readOpenFiles,
        pendingConnects: () => pending?.size ?? 0,
        queueTotals: async () => await (backend?.queues.totals() ?? { sessions: 0, messages: 0 }),
        deadLetters: async () => await (gateway?.deadLetters.count() ?? 0),
      }, { ...(nodeId !== undefined && { node: nodeId }) })
      // every listener's connections within the open-files limit, refusals counted and logged
      budget = new ConnectionBudget({
        logger,
        relayConcurrency: config.push.fcm !== undefined || config.push.apns !== undefined ? config.push.concurrency : 0,
        onRefused: (listener) => metrics.connectionsRefused.inc({ listener, reason: 'open_files' }),
      })
      pending = new PendingConnects({
        maxConnectBytes: maxConnectBytes(config),
        maxPerIp: config.limits.maxPendingConnectsPerIp,
        logger,
        onRefused: (reason) => metrics.preAuthRefused.inc({ reason }),
      })
      broker = await createBroker({
        config,
        sessions: backend.sessions,
        ...(backend.mq !== undefined && { mq: backend.mq }),
        ...(backend.cluster !== undefined && { presence: backend.cluster.presence }),
        ...(backend.cluster !== undefined && { remote: backend.cluster.remote }),
        ...(backend.rateLimiters !== undefined && { rateLimiters: backend.rateLimiters }),
        unavailable,
        verifier,
        acl,
        clientIds,
        logger,
        observer: {
          messageIn: () => metrics.messagesIn.inc({ transport: 'mqtt' }),
          messageOut: () => metrics.messagesOut.inc(),
          connectRefused: (code) => {
            metrics.authFailures.inc({ transport: 'mqtt', code })
            metrics.mqttConnectsRefused.inc({ reason: code })
          },
          publishDenied: () => metrics.publishDenied.inc(),
          slowClientDropped: (qos) => metrics.slowClientDropped.inc({ qos: String(qos) }),
          slowClientClosed: (reason) => metrics.slowClientClosed.inc({ reason }),
        },
      })
      watchConnectionEvents(broker.aedes, {
        connected: () => metrics.mqttConnects.inc(),
        disconnected: (reason) => metrics.mqttDisconnects.inc({ reason }),
      })
      // queues over limits.maxQueuedMessagesPerSession are cut and expired sessions deleted before anything is queued or connects
      sessionLimits = await applySessionLimits({
        config,
        activity: backend.sessionActivity,
        broker,
        owners: clientIds,
        logger,
        observer: {
          queueDropped: (count) => metrics.queueDropped.inc(count),
          sessionExpired: (kind) => metrics.sessionsExpired.inc({ kind }),
        },
        ...(options.now !== undefined && { now: options.now }),
      })
      const relay = createRelayGateway({
        config,
        logger,
        installations,
        principals,
        acl,
        broker: broker.port,
        store: backend.relayOutbox,
        senders: createSenders(config.push, logger),
        observer: metrics.relay,
      })
      gateway = relay
      broker.sessions.policy.routing = relay.routingHook
      broker.sessions.limitRetained(config.limits)
      await relay.start()
      // bucket events a crash left unpublished go out before any new write (with the relay in place)
      await buckets.start(broker.port, logger)

      const publicPorts = (): PublicPorts => ({ mqtt: ports.mqtt, mqtts: ports.mqtts, ws: ports.http, wss: ports.https })
      const ctx: HttpContext = {
        config, version: heraldVersion(), logger, verifier, acl, broker: broker.port, installations, principals, appTopics, buckets, clientIds, metrics, relay,
        storage: backend,
        ...(nodeId !== undefined && { node: nodeId }),
        ...(backend.rateLimiters !== undefined && { rateLimiters: backend.rateLimiters }),
        readiness: () => ready ? (backend?.problem() ?? budget?.problem() ?? null) : new HeraldError('SERVER_UNAVAILABLE', 'not ready'),
        unavailable,
        ports: publicPorts,
      }

      const tcp = createTcpTransport(handleConnection)
      netServers.push(tcp)
      budget.watch(tcp, 'mqtt')
      const mqtt = await listen(tcp, config.mqtt.port, host)
      const http = await startHttp(ctx, config.http.port)
      let mqtts: number | null = null
      let https: number | null = null
      if (config.tls.certFile !== null && config.tls.keyFile !== null) {
        const tls = { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
        // a stalled handshake holds memory as a stalled CONNECT does
        const tlsServer = createTlsTransport({ ...tls, handshakeTimeout: config.limits.connectTimeoutMs }, handleConnection)
        netServers.push(tlsServer)
        budget.watch(tlsServer, 'mqtt')
        mqtts = await listen(tlsServer, config.tls.mqttPort, host)
        https = await startHttp(ctx, config.tls.httpsPort, tls)
      }
      ports = { mqtt, http, mqtts, https }
      // every listener is bound: what is open now is what Herald needs besides its connections
      budget.start()
      ready = true
      logger.info({ host, ports, wsPath: config.http.wsPath, listeners: listenerUrls(host, config.http.wsPath, ports), providers: enabledProviders(config.push), ...backend.location }, 'herald listening')
      return ports
    },

    async stop () {
      ready = false
      // stop accepting first; open connections are closed by the broker below
      const closing = netServers.map(async (server) => await closeServer(server))
      for (const wss of webSocketServers) wss.close()
      if (broker !== undefined) await broker.close()
      await sessionLimits?.close()
      sessionLimits = undefined
      await Promise.all(closing)
      // in-flight deliveries settle; pending jobs stay in the outbox for the next start
      if (gateway !== undefined) await gateway.close()
      await Promise.all(httpApps.map(async (app) => await app.close()))
      budget?.close()
      pending?.close()
      pending = undefined
      budget = undefined
      await backend?.close()
      backend = undefined
      broker = undefined
      gateway = undefined
      netServers.length = 0
      httpApps.length = 0
      webSocketServers.length = 0
      logger.info('herald stopped')
    },
  }
}
