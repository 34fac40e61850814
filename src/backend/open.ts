import cluster from 'node:cluster'
import type { Logger } from 'pino'
import type { HeraldConfig } from '../config/index.js'
import type { BackendOptions, StorageBackend } from './backend.js'
import { openLevelBackend } from './level.js'
import { clusterNodeId, openRedisBackend } from './redis.js'

/** The backend the config asks for: Redis when `cluster.redis.url` is set, the embedded LevelDB otherwise. */
export async function openBackend (config: HeraldConfig, logger: Logger, options: BackendOptions = {}): Promise<StorageBackend> {
  if (config.cluster.redis.url === null) return await openLevelBackend(config, logger, options)
  return await openRedisBackend(config, logger, options.nodeId ?? clusterNodeId(config, cluster.worker?.id))
}
