// first, for its effect: mqtt-packet must be loaded by it before aedes loads it (packet-debug.ts)
import './packet-debug.js'
import { Aedes, type Client } from 'aedes'
import type { Logger } from 'pino'
import type { Acl } from '../acl/index.js'
import type { TokenVerifier } from '../auth/index.js'
import type { HeraldConfig } from '../config/index.js'
import type { ClusterPresence } from '../cluster/presence.js'
import type { HeraldError } from '../errors/index.js'
import type { RemoteClients } from '../cluster/remote-clients.js'
import type { ClientOwnerStore } from '../store/client-owners.js'
import type { RateLimiters } from '../store/rate-limiters.js'
import type { SessionStorage } from '../store/session-storage.js'
import { createBrokerPort, type BrokerPort } from './broker-port.js'
import { createConnectLimiter } from './connect-limiter.js'
import type { ConnectionRegistry } from './connection-registry.js'
import { installHooks, type BrokerObserver } from './hooks.js'
import { fillPacketNumberCache } from './packet-number-cache.js'

export interface Broker {
  readonly aedes: Aedes
  readonly connections: ConnectionRegistry<Client>
  readonly sessions: SessionStorage
  /** What the HTTP API and plugins use instead of aedes. */
  readonly port: BrokerPort
  close (): Promise<void>
}

export interface BrokerDeps {
  readonly config: HeraldConfig
  /** the session store, given to aedes as its persistence (storage backend) */
  readonly sessions: SessionStorage
  /** aedes' message bus between cluster nodes; undefined: in-process */
  readonly mq?: unknown
  /** who is connected to which cluster node; undefined: one process */
  readonly presence?: ClusterPresence
  /** how the broker port reaches a connection another cluster node holds (and serves the others' requests) */
  readonly remote?: RemoteClients
  /** where limits.connectRatePerIp counts: the cluster's Redis; undefined: this process's memory */
  readonly rateLimiters?: RateLimiters
  /** why no CONNECT can be admitted now (connect-policy.ts): a cluster node that lost Redis refuses at once */
  readonly unavailable?: () => HeraldError | null
  readonly verifier: TokenVerifier
  readonly acl: Acl
  readonly clientIds: ClientOwnerStore
  readonly logger: Logger
  readonly observer?: BrokerObserver
}

export async function createBroker ({ config, sessions, mq, presence, remote, rateLimiters, unavailable, verifier, acl, clientIds, logger, observer }: BrokerDeps): Promise<Broker> {
  const aedes = new Aedes({
    persistence: sessions,
    ...(mq !== undefined && { mq }),
    // aedes publishes the wills of a node it has not heard from in three heartbeats (cluster.nodeTimeoutMs)
    ...(presence !== undefined && { heartbeatInterval: Math.max(1, Math.floor(config.cluster.nodeTimeoutMs / 3)) }),
    // mqemitter's default (100 messages in delivery at once) queues the rest in an array drained with
    // Array.shift(); 0 delivers each message as it comes. Publishers are held back by their sockets
    // and, at QoS 1, by the PUBACK that waits for the session store.
    concurrency: 0,
    connectTimeout: config.limits.connectTimeoutMs,
    // a connection whose peer reads nothing for this long is closed (slow or stalled subscriber)
    drainTimeout: config.limits.slowClientTimeoutMs,
    maxTopicLevels: config.limits.maxTopicLevels,
    // Herald checks client ids itself (limits.maxClientIdLength); aedes' limit only concerns MQTT 3.1
    maxClientsIdLength: config.limits.maxClientIdLength,
  })
  const connections = installHooks(aedes, {
    verifier,
    acl,
    anonymous: { enabled: config.auth.anonymous.enabled, grants: config.auth.anonymous.acl },
    limits: config.limits,
    deniedPublish: config.mqtt.deniedPublish,
    owners: clientIds,
    sessions,
    ...(presence !== undefined && { presence }),
    ...(unavailable !== undefined && { unavailable }),
    connectLimiter: createConnectLimiter(config.limits.connectRatePerIp.points, config.limits.connectRatePerIp.windowSec, rateLimiters),
    logger,
    ...(observer !== undefined && { observer }),
  })
  await aedes.listen()
  // before the first CONNACK, which would otherwise pay for it (packet-number-cache.ts)
  fillPacketNumberCache()
  return {
    aedes,
    connections,
    sessions,
    port: createBrokerPort(aedes, sessions, connections, presence !== undefined ? { presence, ...(remote !== undefined && { remote }) } : undefined),
    close: async () => {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await sessions.flush()
    },
  }
}
