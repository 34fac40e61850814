import cluster from 'node:cluster'
import type { Logger } from 'pino'
import type { HeraldConfig } from '../config/index.js'
import type { BackendOptions, StorageBackend } from './backend.js'
import { openLevelBackend } from './level.js'
import { clusterNodeId } from './node-id.js'

/**
 * The backend the config asks for: Redis when `cluster.redis.url` is set, the
 * embedded LevelDB otherwise. The Redis backend (ioredis, mqemitter-redis and
 * every Redis store) is loaded only then: a single node's heap carried it for
 * nothing.
 */
export async function openBackend (config: HeraldConfig, logger: Logger, options: BackendOptions = {}): Promise<StorageBackend> {
  if (config.cluster.redis.url === null) return await openLevelBackend(config, logger, options)
  const { openRedisBackend } = await import('./redis.js')
  return await openRedisBackend(config, logger, options.nodeId ?? clusterNodeId(config, cluster.worker?.id))
}
