import type { RelayContent } from './types.js'

/** One message to one installation, as stored in the outbox until it is settled. */
export interface RelayJob {
  readonly id: string
  readonly installationId: string
  readonly content: RelayContent
  readonly createdAt: number
  /** After this (ms since the epoch) the job is dropped as expired. */
  readonly expiresAt: number
  /** Failed attempts so far. */
  readonly attempts: number
  /** Not to be tried before this (ms since the epoch). */
  readonly notBefore: number
}

/** The durable outbox, provided by Herald (LevelDB); the relay never sees the database. */
export interface RelayStore {
  putMany (jobs: readonly RelayJob[]): Promise<void>
  put (job: RelayJob): Promise<void>
  /** Removes settled jobs, in one write. */
  deleteMany (ids: readonly string[]): Promise<void>
  /** Moves a job that ran out of attempts aside, with the last reason. */
  deadLetter (job: RelayJob, reason: string): Promise<void>
  loadAll (): AsyncIterable<RelayJob>
}
