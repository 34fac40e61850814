import type { RelayStore } from './job.js'
import type { RetryPolicy } from './retry-policy.js'
import type { DeviceToken, PushProvider, PushSender } from './types.js'

/** What a relay worker is given. */
export interface WorkerOptions {
  readonly store: RelayStore
  readonly senders: readonly PushSender[]
  readonly tokens: TokenDirectory
  readonly policy: RetryPolicy
  /** Deliveries in flight at once, all providers together. */
  readonly concurrency: number
  readonly maxAttempts: number
  readonly logger: RelayLogger
  readonly observer?: RelayObserver
  readonly now?: () => number
}

/** What the worker needs to know about installations, at send time (tokens change and get pruned). */
export interface TokenDirectory {
  /** The push token of each installation now (null: none), in order: one read for a whole batch. */
  tokensOf (installationIds: readonly string[]): Promise<ReadonlyArray<DeviceToken | null>>
  /** Removes `token` from the installation, unless it has been replaced meanwhile. */
  prune (installationId: string, token: DeviceToken): Promise<void>
}

/** Counts outcomes (metrics) without the relay knowing about Prometheus. */
export interface RelayObserver {
  sent (provider: PushProvider, latencyMs: number): void
  /** 'none': the failure came before a provider was known (the token lookup). */
  retried (provider: PushProvider | 'none'): void
  pruned (provider: PushProvider): void
  dropped (provider: PushProvider | 'none', why: DropReason): void
  deadLettered (provider: PushProvider | 'none'): void
}

/** Why a job was given up, as a small fixed set (a metric label). */
export type DropReason = 'expired' | 'no-token' | 'disabled' | 'not-configured' | 'rejected'

export interface RelayLogger {
  info (fields: object, message: string): void
  warn (fields: object, message: string): void
}

/** Only an error's name and code go to the log: a decode error's message can quote a stored record, push token included. */
export function errorFields (err: unknown): { error: string, code: unknown } {
  return err instanceof Error ? { error: err.name, code: (err as Error & { code?: unknown }).code } : { error: typeof err, code: undefined }
}
