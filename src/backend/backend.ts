import type { RelayStore } from '../../plugins/push-core/index.js'
import type { BucketStore } from '../buckets/store.js'
import type { ClusterPresence } from '../cluster/presence.js'
import type { RemoteClients } from '../cluster/remote-clients.js'
import type { HeraldError } from '../errors/index.js'
import type { AppTopicStore } from '../store/app-topics.js'
import type { ClientOwnerStore } from '../store/client-owners.js'
import type { BackupResult } from '../store/backup.js'
import type { InstallationStore } from '../store/installations.js'
import type { PrincipalDirectory } from '../store/known-principals.js'
import type { Database } from '../store/open-store.js'
import type { QueueInspector } from '../store/queue-inspector.js'
import type { RateLimiters } from '../store/rate-limiters.js'
import type { SessionActivityStore } from '../store/session-activity.js'
import type { SessionStorage } from '../store/session-storage.js'

/**
 * Where a Herald node keeps its state: the embedded LevelDB of one process
 * (level.ts, the default), or the Redis a cluster shares (redis.ts). Each
 * store has the same interface on both; the broker, the HTTP API and the
 * relay never know which one they use.
 */
export interface StorageBackend {
  /** What to say in the start-up log line: the data directory, or the Redis url without its password. */
  readonly location: Record<string, string>
  readonly sessions: SessionStorage
  readonly appTopics: AppTopicStore
  readonly installations: InstallationStore
  readonly clientIds: ClientOwnerStore
  readonly principals: PrincipalDirectory
  readonly buckets: BucketStore
  readonly relayOutbox: RelayStore
  /** aedes' message bus between nodes; undefined: aedes' in-process one */
  readonly mq?: unknown
  /** this node in a cluster: its id, who is connected to which node, and how to act on a connection another node holds */
  readonly cluster?: { readonly nodeId: string, readonly presence: ClusterPresence, readonly remote: RemoteClients }
  /** where the rate limits count across nodes (CONNECTs per IP, HTTP); undefined: each process in its memory */
  readonly rateLimiters?: RateLimiters
  /** when each client id was last seen (`limits.sessionExpirySec`) */
  readonly sessionActivity: SessionActivityStore
  /** Why writes cannot be made now (full disk, Redis unreachable); null when they can. */
  problem (): HeraldError | null
  /** Makes a write now (at most once a second: store/write-probe.ts); rejects with why the store cannot take it (`/readyz`). */
  probeWrite (): Promise<void>
  /** The persistent sessions' queues, read-only (the admin API, metrics). */
  readonly queues: QueueInspector
  /**
   * An online backup of the whole store into a new directory on this
   * machine (store/backup.ts); absent in a cluster, whose Redis is backed up
   * with Redis' own tools.
   */
  readonly backup?: (dir: string) => Promise<BackupResult>
  /** Once the broker has closed and every store is idle: flushes and closes. */
  close (): Promise<void>
}

export interface BackendOptions {
  /** ServerOptions.onDatabaseOpen: tests observe LevelDB's writes */
  readonly onDatabaseOpen?: (db: Database) => void
  /** this node's id in a cluster (backend/node-id.ts clusterNodeId) */
  readonly nodeId?: string
}
