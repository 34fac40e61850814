import type { Logger } from 'pino'
import type { HeraldConfig } from '../config/index.js'
import type { ClientOwnerStore } from '../store/client-owners.js'
import type { SessionActivityStore } from '../store/session-activity.js'
import { openSessionExpiry, type SessionExpiry } from '../store/session-expiry.js'
import type { Broker } from './create-broker.js'

export interface SessionLimitsDeps {
  readonly config: HeraldConfig
  /** where session expiry keeps when each client id was last seen (the backend's) */
  readonly activity: SessionActivityStore
  readonly broker: Broker
  readonly owners: ClientOwnerStore
  readonly logger: Logger
  readonly observer: {
    queueDropped (count: number): void
    sessionExpired (kind: 'session' | 'queue'): void
  }
  /** the clock session expiry reads (tests move it) */
  readonly now?: () => number
}

export interface SessionLimits {
  /** Sweeps now (tests); resolves with how many sessions expired. 0 when sessions never expire. */
  sweep (): Promise<number>
  /** After the broker closed, before the database does. */
  close (): Promise<void>
}

/**
 * The bounds on what a persistent session keeps (issue 14, item 3):
 * `limits.maxQueuedMessagesPerSession` (store/queue-bound.ts) and
 * `limits.sessionExpirySec` (store/session-expiry.ts). Applied once the
 * broker is created, before any listener: queues over the bound are cut and
 * expired sessions deleted before a client can connect.
 */
export async function applySessionLimits ({ config, activity, broker, owners, logger, observer, now }: SessionLimitsDeps): Promise<SessionLimits> {
  const { maxQueuedMessagesPerSession, sessionExpirySec, sessionExpirySweepSec } = config.limits
  if (maxQueuedMessagesPerSession > 0) {
    await broker.sessions.limitQueues(maxQueuedMessagesPerSession, {
      onDropped: (clientId, count) => {
        logger.debug({ clientId, count }, 'oldest queued messages dropped: limits.maxQueuedMessagesPerSession')
        observer.queueDropped(count)
      },
      onError: (err) => logger.error({ err }, 'dropping the oldest queued messages of a full session queue failed'),
    })
  }
  let expiry: SessionExpiry | undefined
  if (sessionExpirySec > 0) {
    expiry = await openSessionExpiry(activity, {
      expirySec: sessionExpirySec,
      sweepSec: sessionExpirySweepSec,
      sessions: broker.sessions,
      owners,
      isConnected: (clientId) => broker.port.isConnected(clientId),
      logger,
      onExpired: (kind) => observer.sessionExpired(kind),
      ...(now !== undefined && { now }),
    })
    const tracked = expiry
    broker.connections.watch({
      added: (session) => tracked.connected(session.clientId),
      removed: (session) => tracked.disconnected(session.clientId),
    })
    await expiry.start()
  }
  return {
    sweep: async () => await (expiry?.sweep() ?? Promise.resolve(0)),
    close: async () => { await expiry?.close() },
  }
}
