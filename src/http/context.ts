import type { Logger } from 'pino'
import type { Acl } from '../acl/index.js'
import type { TokenVerifier } from '../auth/index.js'
import type { StorageBackend } from '../backend/backend.js'
import type { BrokerPort } from '../broker/broker-port.js'
import type { HeraldConfig } from '../config/index.js'
import type { HeraldError } from '../errors/index.js'
import type { Metrics } from '../metrics/metrics.js'
import type { RelayGateway } from '../relay/gateway.js'
import type { AppTopicStore } from '../store/app-topics.js'
import type { BucketStore } from '../buckets/index.js'
import type { ClientOwnerStore } from '../store/client-owners.js'
import type { InstallationStore } from '../store/installations.js'
import type { PrincipalDirectory } from '../store/known-principals.js'
import type { RateLimiters } from '../store/rate-limiters.js'

/** The ports devices are told to connect to. */
export interface PublicPorts {
  readonly mqtt: number
  readonly mqtts: number | null
  readonly ws: number
  readonly wss: number | null
}

/** Everything the HTTP routes use; the routes never see aedes. */
export interface HttpContext {
  readonly config: HeraldConfig
  /** Herald's version, from package.json. */
  readonly version: string
  readonly logger: Logger
  readonly verifier: TokenVerifier
  readonly acl: Acl
  readonly broker: BrokerPort
  readonly installations: InstallationStore
  /** The newest principal of each user: for decisions about a user's installations without the user's token. */
  readonly principals: PrincipalDirectory
  readonly appTopics: AppTopicStore
  readonly buckets: BucketStore
  readonly clientIds: ClientOwnerStore
  readonly metrics: Metrics
  readonly relay: RelayGateway
  /** The store's queues, online backup (absent in a cluster) and write probe (`/readyz`), for operators. */
  readonly storage: Pick<StorageBackend, 'queues' | 'backup' | 'probeWrite'>
  /** This node's id in a cluster; undefined for a single node. */
  readonly node?: string
  /** Where http.rateLimit and http.authFailureLimit count: the cluster's Redis; undefined: this process's memory. */
  readonly rateLimiters?: RateLimiters
  /** Why the server should get no traffic now (starting, stopping, the store cannot write), or null: `/readyz`. */
  readiness (): HeraldError | null
  /**
   * Why no `/v1` request can be served now (a cluster node that lost Redis:
   * STORE_UNREACHABLE), asked before anything waits for the store; absent or
   * null: serve. Narrower than readiness: a full disk still serves reads.
   */
  unavailable? (): HeraldError | null
  ports (): PublicPorts
}
