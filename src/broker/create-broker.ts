import { Aedes, type Client } from 'aedes'
import type { Logger } from 'pino'
import type { Acl } from '../acl/index.js'
import type { TokenVerifier } from '../auth/index.js'
import type { HeraldConfig } from '../config/index.js'
import { createClientOwnerStore } from '../store/client-owners.js'
import type { Database } from '../store/open-store.js'
import { SessionStore } from '../store/session-store.js'
import { createConnectLimiter } from './connect-limiter.js'
import type { ConnectionRegistry } from './connection-registry.js'
import { installHooks } from './hooks.js'

export interface Broker {
  readonly aedes: Aedes
  readonly connections: ConnectionRegistry<Client>
  close (): Promise<void>
}

export interface BrokerDeps {
  readonly config: HeraldConfig
  readonly db: Database
  readonly verifier: TokenVerifier
  readonly acl: Acl
  readonly logger: Logger
}

export async function createBroker ({ config, db, verifier, acl, logger }: BrokerDeps): Promise<Broker> {
  const sessions = new SessionStore(db.sublevel('sessions', { valueEncoding: 'buffer' }))
  const aedes = new Aedes({
    persistence: sessions,
    connectTimeout: config.limits.connectTimeoutMs,
    maxTopicLevels: config.limits.maxTopicLevels,
    // Herald checks client ids itself (limits.maxClientIdLength); aedes' limit only concerns MQTT 3.1
    maxClientsIdLength: config.limits.maxClientIdLength,
  })
  const connections = installHooks(aedes, {
    verifier,
    acl,
    anonymous: { enabled: config.auth.anonymous.enabled, grants: config.auth.anonymous.acl },
    limits: config.limits,
    owners: createClientOwnerStore(db),
    sessions,
    connectLimiter: createConnectLimiter(config.limits.connectRatePerIp.points, config.limits.connectRatePerIp.windowSec),
    logger,
  })
  await aedes.listen()
  return {
    aedes,
    connections,
    close: async () => { await new Promise<void>((resolve) => aedes.close(() => resolve())) },
  }
}
