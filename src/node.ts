import type { Logger } from 'pino'
import { createAcl, type Acl } from './acl/index.js'
import { createTokenVerifier, type TokenVerifier } from './auth/index.js'
import type { BackendOptions, StorageBackend } from './backend/backend.js'
import { openBackend } from './backend/open.js'
import { watchConnectionEvents } from './broker/connection-events.js'
import { createBroker, type Broker } from './broker/create-broker.js'
import type { BrokerObserver } from './broker/hooks.js'
import { applySessionLimits, type SessionLimits } from './broker/session-limits.js'
import type { HeraldConfig } from './config/index.js'
import type { HeraldError } from './errors/index.js'
import { openGarbageCollector } from './memory/collect-garbage.js'
import { StormReclaim } from './memory/storm-reclaim.js'
import { createMetrics, type Metrics } from './metrics/metrics.js'
import { createRelayGateway, type RelayGateway } from './relay/gateway.js'
import { createSenders } from './relay/senders.js'
import { ConnectionBudget, readOpenFiles } from './transport/connection-budget.js'
import { maxConnectBytes, PendingConnects } from './transport/pre-auth.js'

export interface NodeOptions extends BackendOptions {
  /** The clock session expiry (`limits.sessionExpirySec`) reads; tests move it. */
  readonly now?: () => number
}

/**
 * One Herald node without its listeners: the storage backend, the broker
 * with its session bounds, the relay, metrics, and the guards new
 * connections pass (open-files budget, pending CONNECTs). server.ts puts
 * listeners in front of it.
 */
export interface HeraldNode {
  readonly backend: StorageBackend
  readonly broker: Broker
  readonly relay: RelayGateway
  readonly metrics: Metrics
  readonly budget: ConnectionBudget
  readonly pending: PendingConnects
  readonly verifier: TokenVerifier
  readonly acl: Acl
  /** A lost cluster Redis: CONNECTs and /v1 requests are refused at once instead of waiting for it. */
  unavailable (): HeraldError | null
  /** Closes every client and the broker (its sessions flushed); before the listeners' connections are gone. */
  closeBroker (): Promise<void>
  /** Settles the relay's deliveries in flight (pending jobs stay in the outbox for the next start). */
  closeRelay (): Promise<void>
  /** Closes the guards and the backend; after the HTTP listeners closed. */
  close (): Promise<void>
}

export async function openNode (config: HeraldConfig, logger: Logger, options: NodeOptions = {}): Promise<HeraldNode> {
  const backend = await openBackend(config, logger, options)
  try {
    return await startOn(backend, config, logger, options)
  } catch (err) {
    // a failed start leaves nothing open (a LevelDB lock, a Redis connection that would keep the process alive)
    await backend.close().catch(() => {})
    throw err
  }
}

async function startOn (backend: StorageBackend, config: HeraldConfig, logger: Logger, options: NodeOptions): Promise<HeraldNode> {
  const { appTopics, clientIds, principals, buckets } = backend
  const unavailable = (): HeraldError | null => {
    const problem = backend.problem()
    return problem?.code === 'STORE_UNREACHABLE' ? problem : null
  }
  // every token accepted, at MQTT CONNECT or on an HTTP call, tells who its user is now (the relay's ACL)
  const verifier = principals.watch(createTokenVerifier(config.auth.jwt))
  const acl = createAcl({ rules: config.acl.rules, anonymousGrants: config.auth.anonymous.acl, appTopics, appBuckets: buckets })
  // read at scrape time: broker, pending and relay exist by then
  const metrics = createMetrics({
    connectedClients: () => broker.connections.size,
    relayOutboxDepth: () => relay.depth,
    storageWritable: () => backend.problem() === null ? 1 : 0,
    openFiles: readOpenFiles,
    pendingConnects: () => pending.size,
    queueTotals: async () => await backend.queues.totals(),
    deadLetters: async () => await relay.deadLetters.count(),
  }, { ...(options.nodeId !== undefined && { node: options.nodeId }) })
  // every listener's connections within the open-files limit, refusals counted and logged
  const budget = new ConnectionBudget({
    logger,
    relayConcurrency: config.push.fcm !== undefined || config.push.apns !== undefined ? config.push.concurrency : 0,
    onRefused: (listener) => metrics.connectionsRefused.inc({ listener, reason: 'open_files' }),
  })
  const pending = new PendingConnects({
    maxConnectBytes: maxConnectBytes(config),
    maxPerIp: config.limits.maxPendingConnectsPerIp,
    logger,
    onRefused: (reason) => metrics.preAuthRefused.inc({ reason }),
  })
  const broker = await createBroker({
    config,
    sessions: backend.sessions,
    ...(backend.mq !== undefined && { mq: backend.mq }),
    ...(backend.cluster !== undefined && { presence: backend.cluster.presence, remote: backend.cluster.remote }),
    ...(backend.rateLimiters !== undefined && { rateLimiters: backend.rateLimiters }),
    unavailable,
    verifier,
    acl,
    clientIds,
    logger,
    observer: brokerObserver(metrics),
  })
  const { reclaim, close: stopReclaiming } = stormReclaim(config, logger, metrics)
  watchConnectionEvents(broker.aedes, {
    connected: () => {
      metrics.mqttConnects.inc()
      reclaim.connectionOpened()
    },
    disconnected: (reason) => metrics.mqttDisconnects.inc({ reason }),
  })
  // queues over limits.maxQueuedMessagesPerSession are cut and expired sessions deleted before anything is queued or connects
  const sessionLimits = await applySessionLimits({
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
  const relay = await startRelay(config, logger, backend, broker, acl, metrics)
  // bucket events a crash left unpublished go out before any new write (with the relay in place)
  await buckets.start(broker.port, logger)
  reclaim.start()
  return nodeOf({ backend, broker, relay, metrics, budget, pending, verifier, acl, unavailable, sessionLimits, stopReclaiming })
}

/** The collection after a storm of new connections (memory.reclaimAfterConnections), its pause measured. */
function stormReclaim (config: HeraldConfig, logger: Logger, metrics: Metrics): { reclaim: StormReclaim, close (): Promise<void> } {
  const { reclaimAfterConnections, reclaimQuietSec } = config.memory
  const collector = reclaimAfterConnections > 0 ? openGarbageCollector() : undefined
  if (reclaimAfterConnections > 0 && collector === undefined) logger.warn('this Node has no inspector: memory.reclaimAfterConnections has no effect')
  const connections = collector === undefined ? 0 : reclaimAfterConnections
  const reclaim = new StormReclaim({ connections, quietMs: reclaimQuietSec * 1000 }, async () => await collector?.collect(), logger,
    ({ pauseMs }) => metrics.memoryReclaimPause.observe(pauseMs / 1000))
  return {
    reclaim,
    async close () {
      await reclaim.stop()
      collector?.close()
    },
  }
}

/** The relay wired into the broker: it decides which offline subscriptions also get FCM/APNs. */
async function startRelay (config: HeraldConfig, logger: Logger, backend: StorageBackend, broker: Broker, acl: Acl, metrics: Metrics): Promise<RelayGateway> {
  const relay = createRelayGateway({
    config,
    logger,
    installations: backend.installations,
    principals: backend.principals,
    acl,
    broker: broker.port,
    store: backend.relayOutbox,
    senders: await createSenders(config.push, logger),
    observer: metrics.relay,
  })
  broker.sessions.policy.routing = relay.routingHook
  broker.sessions.limitRetained(config.limits)
  await relay.start()
  return relay
}

/** What the broker counts, as metrics. */
function brokerObserver (metrics: Metrics): BrokerObserver {
  return {
    messageIn: () => metrics.mqttMessages.in.add(),
    messageOut: () => metrics.mqttMessages.out.add(),
    connectRefused: (code) => {
      metrics.authFailures.inc({ transport: 'mqtt', code })
      metrics.mqttConnectsRefused.inc({ reason: code })
    },
    publishDenied: () => metrics.publishDenied.inc(),
    slowClientDropped: (qos) => metrics.slowClientDropped.inc({ qos: String(qos) }),
    slowClientClosed: (reason) => metrics.slowClientClosed.inc({ reason }),
  }
}

type NodeParts = Omit<HeraldNode, 'closeBroker' | 'closeRelay' | 'close'> & { readonly sessionLimits: SessionLimits, readonly stopReclaiming: () => Promise<void> }

function nodeOf ({ sessionLimits, stopReclaiming, ...parts }: NodeParts): HeraldNode {
  return {
    ...parts,
    async closeBroker () {
      await stopReclaiming()
      await parts.broker.close()
      await sessionLimits.close()
    },
    closeRelay: async () => { await parts.relay.close() },
    async close () {
      parts.budget.close()
      parts.pending.close()
      await parts.backend.close()
    },
  }
}
