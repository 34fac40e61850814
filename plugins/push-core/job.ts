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

/** A job that ran out of attempts, kept for inspection. */
export type DeadLetter = RelayJob & { readonly reason: string, readonly deadAt: number }

/**
 * The durable outbox, provided by Herald (LevelDB for one process, Redis
 * Streams for a cluster); the relay never sees the database.
 *
 * A job is owned by the node that took it, from `take` until it is settled
 * (`settle` or `deadLetter`); a retry (`update`) keeps it with that node. In a
 * cluster each job is taken by exactly one node, and the jobs of a node that
 * stopped answering are taken by another after a timeout.
 */
export interface RelayStore {
  /** Stores new jobs; resolves once they are durable. A worker (this node's or another's) takes them. */
  enqueue (jobs: readonly RelayJob[]): Promise<void>
  /**
   * Waits a while for jobs this node may send and returns up to `max` of them,
   * now owned by this node: new jobs, jobs left by a crash or a restart, jobs
   * of a node that died. Resolves `[]` when none came in time (the caller asks
   * again) or once `signal` is aborted.
   */
  take (max: number, signal: AbortSignal): Promise<RelayJob[]>
  /** A transient failure: saves the job's new `attempts` and `notBefore`; it stays with this node. */
  update (job: RelayJob): Promise<void>
  /** Removes settled jobs (sent, pruned, dropped), in one write. */
  settle (ids: readonly string[]): Promise<void>
  /** Moves a job that ran out of attempts to the dead letters, with the last reason. */
  deadLetter (job: RelayJob, reason: string): Promise<void>
  deadLetters (): AsyncIterable<DeadLetter>
  /** One page of dead letters in job id order, those after `after` (a job id); `next` is the last id when more may follow. */
  listDeadLetters (options: { readonly after?: string, readonly limit: number }): Promise<{ letters: DeadLetter[], next: string | null }>
  getDeadLetter (id: string): Promise<DeadLetter | undefined>
  /**
   * Moves a dead letter back into the outbox as the job `revive` makes of it
   * (same id), in one step: of two replays of one dead letter (two operators,
   * two nodes) one gets the job, the other undefined, as does a replay of a
   * dead letter purged meanwhile.
   */
  replayDeadLetter (id: string, revive: (letter: DeadLetter) => RelayJob): Promise<RelayJob | undefined>
  /** Removes these dead letters, or every one when `ids` is undefined; resolves how many were removed. */
  deleteDeadLetters (ids?: readonly string[]): Promise<number>
  /** Dead letters stored, every node's together. */
  deadLetterCount (): Promise<number>
  /** Jobs stored and not settled yet, every node's together. */
  count (): Promise<number>
  /**
   * Tells `listener` about jobs this node took and no longer owns (another
   * node took them over while this one did not answer): they are not to be sent.
   */
  onLost (listener: (ids: readonly string[]) => void): void
  /**
   * This node stops taking jobs. What it took and did not settle stays stored:
   * for the next start of a single process, for the other nodes at once in a cluster.
   */
  close (): Promise<void>
}

/**
 * What a single-process outbox keeps durable (LevelDB): jobs by id and dead
 * letters. `createLocalRelayStore` turns it into a RelayStore; one process
 * owns every job, so which job goes to which worker is decided in memory.
 */
export interface OutboxStorage {
  putMany (jobs: readonly RelayJob[]): Promise<void>
  put (job: RelayJob): Promise<void>
  /** Removes settled jobs, in one write. */
  deleteMany (ids: readonly string[]): Promise<void>
  /** Moves a job aside with its last reason, in one write. */
  deadLetter (job: RelayJob, reason: string): Promise<void>
  loadAll (): AsyncIterable<RelayJob>
  deadLetters (): AsyncIterable<DeadLetter>
  /** Dead letters in job id order, after `after` (exclusive). */
  deadLettersAfter (after: string | undefined, limit: number): AsyncIterable<DeadLetter>
  getDeadLetter (id: string): Promise<DeadLetter | undefined>
  /** Stores `job` and removes the dead letter of the same id, in one write. */
  revive (job: RelayJob): Promise<void>
  /** Removes dead letters, in one write. */
  deleteDeadLetters (ids: readonly string[]): Promise<void>
  /** Ids of the dead letters. */
  deadLetterIds (): AsyncIterable<string>
}

/**
 * The job a replayed dead letter becomes: no attempts made, due now, and as
 * long to live as the message had when it was first routed (its `ttl`), from
 * now: an operator replays once the cause is fixed, often after the original
 * expiry, and a job revived already expired would be dropped at once.
 */
export function reviveDeadLetter (letter: DeadLetter, now: number): RelayJob {
  const ttlMs = Math.max(0, letter.expiresAt - letter.createdAt)
  return { id: letter.id, installationId: letter.installationId, content: letter.content, createdAt: letter.createdAt, expiresAt: now + ttlMs, attempts: 0, notBefore: now }
}
