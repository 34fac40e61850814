import type { Logger } from 'pino'
import { createClusterBus } from '../cluster/bus.js'
import { acquireNodeLease } from '../cluster/node-lease.js'
import { openClusterPresence } from '../cluster/presence.js'
import { openRemoteClients } from '../cluster/remote-clients.js'
import type { HeraldConfig } from '../config/index.js'
import { HeraldError } from '../errors/index.js'
import { keepsInstallationOwners } from '../store/known-principals.js'
import { openRedisAppTopicStore } from '../store/redis/app-topics.js'
import { openRedisBucketStore } from '../store/redis/buckets.js'
import { openRedisClientOwnerStore } from '../store/redis/client-owners.js'
import { openRedisConnection } from '../store/redis/connection.js'
import { openRedisInstallationStore } from '../store/redis/installations.js'
import { openRedisPrincipalDirectory } from '../store/redis/known-principals.js'
import { redisQueueInspector } from '../store/redis/queue-inspector.js'
import { redisRateLimiters } from '../store/redis/rate-limiters.js'
import { openRedisRelayStore } from '../store/redis/relay-outbox.js'
import { redisSessionActivity } from '../store/redis/session-activity.js'
import { RedisSessionStore } from '../store/redis/session-store.js'
import { createSessionPolicy } from '../store/session-policy.js'
import { writeProbe } from '../store/write-probe.js'
import type { StorageBackend } from './backend.js'
import { watchRedis } from './redis-health.js'

/**
 * A node of a cluster: every store in the Redis at `cluster.redis.url`
 * (docs/clustering.md says what each one guarantees), aedes' bus over Redis
 * pub/sub, a lease that tells the other nodes this one is alive, and the
 * cluster-wide presence of connections. Throws, naming the url, when Redis
 * does not answer at start; afterwards a lost Redis makes problem() say so
 * (`/readyz` 503, CONNACK 3, HTTP 503) until it is back.
 */
export async function openRedisBackend (config: HeraldConfig, logger: Logger, nodeId: string): Promise<StorageBackend> {
  const url = config.cluster.redis.url
  if (url === null) throw new Error('cluster.redis.url is not set')
  const conn = await openRedisConnection({ url, keyPrefix: config.cluster.keyPrefix })
  const health = watchRedis(conn.client)
  const leaseMs = config.cluster.nodeTimeoutMs
  const onError = (what: string) => (err: unknown): void => logger.warn({ err }, what)
  const lease = await acquireNodeLease(conn, { node: nodeId, leaseMs, onError: onError('renewing the node lease or sweeping dead nodes failed') })
  const presence = await openClusterPresence(conn, lease)
  lease.onNodeDead(async (dead) => {
    logger.warn({ deadNode: dead }, 'a cluster node stopped renewing its lease: its connections leave the presence')
    await presence.removeNode(dead)
  })
  const bus = createClusterBus(conn, onError('the cluster bus lost Redis'))
  // HTTP operations on a connection another node holds go to that node (the broker serves the requests it gets)
  const remote = await openRemoteClients(conn, { node: nodeId, timeoutMs: config.cluster.requestTimeoutMs, onError: onError('a request from another cluster node failed') })
  const storeOptions = { onError: onError('a store mirror could not follow Redis; it reloads') }
  const sessions = new RedisSessionStore(conn, {
    policy: createSessionPolicy(),
    onError: onError('a session store write nobody waits for failed'),
  })
  const clientIds = await openRedisClientOwnerStore(conn, storeOptions)
  const principals = await openRedisPrincipalDirectory(conn, logger, { keeps: keepsInstallationOwners(clientIds) })
  const appTopics = await openRedisAppTopicStore(conn, storeOptions)
  const installations = await openRedisInstallationStore(conn, storeOptions)
  const buckets = await openRedisBucketStore(conn, config.buckets, { node: nodeId, leaseMs, ...storeOptions })
  lease.onNodeDead(async (dead) => { await buckets.takeOver(dead) })
  const relayOutbox = await openRedisRelayStore(conn, { consumer: nodeId, claimIdleMs: leaseMs })

  return {
    location: { redis: conn.safeUrl, node: nodeId },
    sessions,
    appTopics,
    installations,
    clientIds,
    principals,
    buckets,
    relayOutbox,
    sessionActivity: redisSessionActivity(conn),
    mq: bus.mq,
    cluster: { nodeId, presence, remote },
    rateLimiters: redisRateLimiters(conn),
    // expires by itself: nothing of it stays once the node has gone
    probeWrite: writeProbe(async () => { await conn.client.set(`probe:${nodeId}`, '1', 'PX', 10_000) }),
    queues: redisQueueInspector(conn),
    problem () {
      const lost = health.problem()
      if (lost !== null) return new HeraldError('STORE_UNREACHABLE', `Redis (cluster.redis.url) is lost: ${lost}`)
      if (!lease.held()) return new HeraldError('SERVER_UNAVAILABLE', 'this node could not renew its cluster lease')
      return null
    },
    async close () {
      // its pending events go out, or stay for the node that takes them over
      await buckets.stop()
      await principals.idle()
      await presence.removeNode(nodeId).catch(onError('removing this node\'s connections from the presence failed'))
      await presence.close()
      await remote.close()
      // aedes never destroys its persistence: the session store's mirrors stop following Redis here (conn.close() below closes the connections)
      await sessions.destroy()
      await Promise.all([appTopics.close(), installations.close(), clientIds.close()])
      await bus.close()
      await lease.close()
      health.close()
      await conn.close()
    },
  }
}
