import type { BatchTarget } from './group-commit.js'
import type { RetainedDatabase } from './retained-messages.js'
import type { KeyLister } from './session-index.js'
import type { SessionPolicy } from './session-policy.js'

/** The (sub)level the session store lives in. */
export interface SessionDatabase extends KeyLister, RetainedDatabase {
  clear (range: { gte: string, lt: string }): Promise<void>
  iterator (range: { gte: string, lt: string }): AsyncIterable<[string, Buffer]>
  /** abstract-level sublevel API: this key as the root database stores it */
  prefixKey (key: string, keyFormat: 'utf8'): string
  /** the root database */
  readonly db: BatchTarget
}

export interface SessionStoreOptions {
  /** the broker's decisions the store consults (session-policy.ts says why it is filled in after construction) */
  readonly policy?: SessionPolicy
  /** hears about failed in-flight and acknowledgement writes, which no caller waits for */
  readonly onWriteBehindError?: (err: unknown) => void
  /**
   * How long a fresh message's recipients have to acknowledge it before their
   * queue entries are written, and how long writes behind are held back
   * (GroupCommit.writeHeld). 1 s by default.
   */
  readonly holdMs?: number
  /**
   * How long a message whose recipients are all connected waits for their
   * acknowledgements before its record is written anyway; its publisher's
   * PUBACK waits as long at most. 20 ms by default.
   */
  readonly ackWaitMs?: number
}
