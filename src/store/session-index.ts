import { clientIdOfKey, OUTGOING_PREFIX, prefixRange, WILL_PREFIX } from './session-keys.js'

/** Key listing of the session store's (sub)level. */
export interface KeyLister {
  keys (range: { gte: string, lt: string }): AsyncIterable<string>
}

/**
 * Which client ids have stored subscriptions (and which filters), which have
 * a stored will and which may have queued messages, in memory, so a CONNECT
 * of a client with none of these costs no LevelDB read: aedes looks all
 * three up on every CONNECT, and a connect storm waited on those reads.
 * Filled at start (the session store reads the subscriptions), then kept in step by it.
 */
export class SessionIndex {
  readonly #filters = new Map<string, Set<string>>()
  readonly #wills = new Set<string>()
  /** clients that may have queued messages → a count of enqueues, to tell whether one happened during a read */
  readonly #queues = new Map<string, number>()

  /** Wills and queues from the keys; the session store adds the filters as it reads the subscriptions themselves. */
  async load (db: KeyLister): Promise<void> {
    for await (const key of db.keys(prefixRange(WILL_PREFIX))) this.#wills.add(clientIdOfKey(key, WILL_PREFIX))
    for await (const key of db.keys(prefixRange(OUTGOING_PREFIX))) this.#queues.set(clientIdOfKey(key, OUTGOING_PREFIX), 0)
  }

  /** Called before a message is written to the client's queue. */
  markQueued (clientId: string): void {
    this.#queues.set(clientId, (this.#queues.get(clientId) ?? -1) + 1)
  }

  /** undefined: the client has no queued message; otherwise a mark to pass to `queueFoundEmpty`. */
  queueMark (clientId: string): number | undefined {
    return this.#queues.get(clientId)
  }

  /** A read of the queue that began at `mark` found nothing: forget the queue, unless a message was queued since. */
  queueFoundEmpty (clientId: string, mark: number): void {
    if (this.#queues.get(clientId) === mark) this.#queues.delete(clientId)
  }

  forgetQueue (clientId: string): void {
    this.#queues.delete(clientId)
  }

  /** Every client id with stored subscriptions, a will or possibly queued messages. */
  clientIds (): Set<string> {
    return new Set([...this.#filters.keys(), ...this.#wills, ...this.#queues.keys()])
  }

  hasFilters (clientId: string): boolean {
    return this.#filters.has(clientId)
  }

  addFilters (clientId: string, topics: readonly string[]): void {
    let filters = this.#filters.get(clientId)
    if (filters === undefined) {
      filters = new Set()
      this.#filters.set(clientId, filters)
    }
    for (const topic of topics) filters.add(topic)
  }

  removeFilters (clientId: string, topics: readonly string[]): void {
    const filters = this.#filters.get(clientId)
    if (filters === undefined) return
    for (const topic of topics) filters.delete(topic)
    if (filters.size === 0) this.#filters.delete(clientId)
  }

  hasWill (clientId: string): boolean {
    return this.#wills.has(clientId)
  }

  setWill (clientId: string, present: boolean): void {
    if (present) this.#wills.add(clientId)
    else this.#wills.delete(clientId)
  }
}
