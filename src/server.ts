import cluster from 'node:cluster'
import type { Logger } from 'pino'
import { clusterNodeId } from './backend/node-id.js'
import type { Broker } from './broker/create-broker.js'
import type { HeraldConfig } from './config/index.js'
import { HeraldError } from './errors/index.js'
import type { HttpContext } from './http/context.js'
import { Listeners, type ConnectionHandler, type ListeningPorts } from './listeners.js'
import { createLogger, enabledProviders, listenerUrls } from './logger.js'
import { openNode, type HeraldNode } from './node.js'
import type { RelayGateway } from './relay/gateway.js'
import type { Database } from './store/open-store.js'
import { GuardedStream } from './transport/guarded-stream.js'
import { heraldVersion } from './version.js'

export type { ListeningPorts } from './listeners.js'

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

/**
 * The composition root: a node (node.ts: storage, broker, relay, metrics)
 * behind its listeners (listeners.ts). start() opens both, stop() closes
 * them in the order that loses nothing: stop accepting, close the clients
 * and flush their sessions, settle the relay, answer the last HTTP
 * requests, close the store.
 */
export function buildServer (config: HeraldConfig, options: ServerOptions = {}): HeraldServer {
  // in a cluster, every log line and metric names its node
  const nodeId = config.cluster.redis.url === null ? undefined : clusterNodeId(config, cluster.worker?.id)
  const logger = options.logger ?? createLogger(config, { name: 'herald', ...(nodeId !== undefined && { node: nodeId }) })
  let ready = false
  let node: HeraldNode | undefined
  let listeners: Listeners | undefined
  let ports: ListeningPorts = { mqtt: 0, http: 0, mqtts: null, https: null }

  const handleConnection: ConnectionHandler = (stream, remoteAddress, onConnect) => {
    // until its CONNECT is in, a connection counts against its address's limits.maxPendingConnectsPerIp
    if (node === undefined || !node.pending.admit(remoteAddress)) {
      stream.destroy()
      return
    }
    node.broker.aedes.handle(new GuardedStream(stream, config.limits.maxPacketBytes, remoteAddress, node.pending, onConnect))
  }

  function httpContext (started: HeraldNode): HttpContext {
    const { backend, broker, relay } = started
    return {
      config,
      version: heraldVersion(),
      logger,
      verifier: started.verifier,
      acl: started.acl,
      broker: broker.port,
      installations: backend.installations,
      principals: backend.principals,
      appTopics: backend.appTopics,
      buckets: backend.buckets,
      clientIds: backend.clientIds,
      metrics: started.metrics,
      relay,
      storage: backend,
      ...(nodeId !== undefined && { node: nodeId }),
      ...(backend.rateLimiters !== undefined && { rateLimiters: backend.rateLimiters }),
      readiness: () => ready ? (backend.problem() ?? started.budget.problem() ?? null) : new HeraldError('SERVER_UNAVAILABLE', 'not ready'),
      unavailable: started.unavailable,
      ports: () => ({ mqtt: ports.mqtt, mqtts: ports.mqtts, ws: ports.http, wss: ports.https }),
    }
  }

  return {
    get broker () { return node?.broker },
    get relay () { return node?.relay },

    async start () {
      const started = node = await openNode(config, logger, { ...options, ...(nodeId !== undefined && { nodeId }) })
      listeners = new Listeners(config, started.budget, handleConnection)
      ports = await listeners.start(httpContext(started))
      // every listener is bound: what is open now is what Herald needs besides its connections
      started.budget.start()
      ready = true
      const host = config.listen.host
      logger.info({ host, ports, wsPath: config.http.wsPath, listeners: listenerUrls(host, config.http.wsPath, ports), providers: enabledProviders(config.push), ...started.backend.location }, 'herald listening')
      return ports
    },

    async stop () {
      ready = false
      // stop accepting first; open connections are closed by the broker
      const closing = listeners?.stopAccepting()
      await node?.closeBroker()
      await closing
      await node?.closeRelay()
      await listeners?.closeHttp()
      await node?.close()
      node = undefined
      listeners = undefined
      logger.info('herald stopped')
    },
  }
}
