import { randomUUID } from 'node:crypto'
import type { RelayJob, RelayStore } from './job.js'
import { RelayWorker } from './relay-worker.js'
import type { RelayLogger, RelayObserver, TokenDirectory } from './worker-ports.js'
import type { PushSender, RelayContent } from './types.js'

/** The narrow view of Herald the relay gets: no aedes, no database. */
export interface RelayContext {
  readonly logger: RelayLogger
  readonly store: RelayStore
  readonly senders: readonly PushSender[]
  readonly tokens: TokenDirectory
  /** Synchronous facts about a client id, asked for every routed message. */
  readonly recipients: {
    /** True when the client id is an installation with a push token. */
    hasPushToken (clientId: string): boolean
    /** True for push-only installations: always relayed. */
    isPushOnly (clientId: string): boolean
    /** True while an MQTT connection with this client id is open. */
    isConnected (clientId: string): boolean
    /**
     * May each installation's owner read `topic` now (one answer per id, in
     * order; one read for all of them)? The relay's counterpart of the broker's
     * per-delivery ACL check: a subscription stored earlier (or made by an
     * admin) never carries a message its owner may not read.
     */
    mayReceive (clientIds: readonly string[], topic: string): Promise<readonly boolean[]>
  }
  readonly settings: {
    readonly defaultTtlSec: number
    readonly maxAttempts: number
    readonly concurrency: number
    readonly retryBaseMs: number
    readonly retryMaxMs: number
  }
  readonly observer?: RelayObserver
  readonly now?: () => number
}

export interface PushRelay {
  /**
   * A message reached these client ids (topic subscribers, a user's inbox, one
   * installation). Writes a job for each that is an installation with a push
   * token and no open MQTT connection (push-only ones always), and resolves
   * once the jobs are durable. Sending happens in the background, by whichever
   * node takes the jobs from the outbox (this one, in a single process).
   */
  routed (clientIds: Iterable<string>, content: RelayContent, ttlSec?: number): Promise<number>
  start (): Promise<void>
  /** Nothing ready or in flight: for tests and shutdown. */
  idle (): Promise<void>
  /** The outbox is empty, retries included: for tests. */
  drain (): Promise<void>
  /** Jobs this node took from the outbox and has not settled: ready, in flight, or waiting for a retry. */
  readonly depth: number
  close (): Promise<void>
}

export function createPushRelay (ctx: RelayContext): PushRelay {
  const now = ctx.now ?? Date.now
  const worker = new RelayWorker({
    store: ctx.store,
    senders: ctx.senders,
    tokens: ctx.tokens,
    policy: { baseMs: ctx.settings.retryBaseMs, maxMs: ctx.settings.retryMaxMs },
    concurrency: ctx.settings.concurrency,
    maxAttempts: ctx.settings.maxAttempts,
    logger: ctx.logger,
    now,
    ...(ctx.observer !== undefined && { observer: ctx.observer }),
  })

  return {
    async routed (clientIds, content, ttlSec) {
      const { recipients } = ctx
      const createdAt = now()
      const expiresAt = createdAt + (ttlSec ?? ctx.settings.defaultTtlSec) * 1000
      const offline: string[] = []
      for (const clientId of new Set(clientIds)) {
        if (!recipients.hasPushToken(clientId)) continue
        if (!recipients.isPushOnly(clientId) && recipients.isConnected(clientId)) continue
        offline.push(clientId)
      }
      const allowed = offline.length === 0 ? [] : await recipients.mayReceive(offline, content.topic)
      const jobs: RelayJob[] = []
      offline.forEach((clientId, i) => {
        if (allowed[i] === true) jobs.push({ id: randomUUID(), installationId: clientId, content, createdAt, expiresAt, attempts: 0, notBefore: createdAt })
      })
      await worker.enqueue(jobs)
      return jobs.length
    },
    start: async () => await worker.start(),
    idle: async () => await worker.idle(),
    drain: async () => await worker.drain(),
    get depth () { return worker.size },
    close: async () => await worker.close(),
  }
}
