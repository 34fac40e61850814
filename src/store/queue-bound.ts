import { clientIdOfKey, OUTGOING_PREFIX, outgoingPrefix, prefixRange } from './session-keys.js'
import { Serial } from './serial.js'

/** Key listing of the session store's sublevel, with the range options abstract-level takes. */
export interface QueueKeyReader {
  keys (options: { gt?: string, gte?: string, lt: string, limit?: number }): AsyncIterable<string>
}

export interface QueueBoundOptions {
  /** `limits.maxQueuedMessagesPerSession`: at least 1 */
  readonly max: number
  readonly db: QueueKeyReader
  /** Deletes queue entries (keys as the sublevel stores them), through the session store's group commit. */
  readonly remove: (keys: readonly string[]) => Promise<void>
  readonly isConnected: (clientId: string) => boolean
  /** messages dropped from a client's queue (the oldest ones) */
  readonly onDropped: (clientId: string, count: number) => void
  /** a trim that failed: nobody waits for trims at enqueue, so it is only reported */
  readonly onError: (err: unknown) => void
}

/**
 * `limits.maxQueuedMessagesPerSession`: a session's queue keeps its newest
 * messages, and the oldest ones are dropped and counted.
 *
 * Why the oldest: a push broker's newest message is the one that matters (the
 * latest state, the latest notification), and a device back after a long time
 * offline wants that, not the first thousand of a backlog; what it missed is
 * in the backend anyway. EMQX drops the oldest by default for the same reason;
 * Mosquitto (`max_queued_messages`) refuses the new one, which would keep
 * a device from ever hearing anything new until it reconnects.
 *
 * What it costs: the count of each client's queue is kept in memory (loaded
 * from the keys at start), so an enqueue costs a comparison. Queue keys sort
 * in the order messages were queued (`outgoing:<client>:<broker id>:<counter>`
 * with broker ids that sort by start time, broker/broker-id.ts), so the
 * oldest are the first keys of the client's range: a trim is one short range
 * read and a delete. Trims wait until a queue is `slack` (a tenth of the
 * bound) over it and then take it back to the bound in one read, so a full
 * queue costs one read per `slack` messages, not one per message; a trim
 * starts after the last key it deleted, so it does not walk the tombstones of
 * earlier trims. At CONNECT, before aedes reads the queue, it is counted
 * exactly and cut to the bound: a device never receives more than `max`.
 *
 * Only queues of clients that are not connected are trimmed at enqueue: a
 * connected client is being sent its messages (aedes has no in-flight window)
 * and its queue entries are rewritten as they go in flight; one that falls
 * behind is disconnected (`limits.maxOutgoing*`), and the next message or its
 * next CONNECT trims its queue.
 *
 * The count is the session store's view: +1 for every recipient an enqueue
 * names (fresh messages included: their entries are written later), −1 for
 * every acknowledgement and drop. Entries not on disk yet (the last ~2 s of a
 * fan-out, see FreshMessage) cannot be trimmed until they are: a queue may
 * exceed the bound by that much for that long, never at CONNECT.
 */
export class QueueBound {
  readonly #options: QueueBoundOptions
  readonly #slack: number
  /** client id → entries its queue holds or is about to (see the class comment) */
  readonly #counts = new Map<string, number>()
  /** client id → the last key a trim deleted: the next trim reads after it */
  readonly #cursors = new Map<string, string>()
  /** clients whose queue is over the bound by `slack`, for the next trim */
  readonly #due = new Set<string>()
  #scheduled = false
  /** trims and reconciliations, one at a time, so two never pick the same keys */
  readonly #serial = new Serial()
  #running: Promise<void> = Promise.resolve()

  constructor (options: QueueBoundOptions) {
    this.#options = options
    this.#slack = Math.max(1, Math.ceil(options.max / 10))
  }

  get max (): number {
    return this.#options.max
  }

  /** Counts every client's entries from the keys on disk; then trims the queues over the bound (a lowered limit, a crash). */
  async load (): Promise<void> {
    this.#counts.clear()
    for await (const key of this.#options.db.keys(prefixRange(OUTGOING_PREFIX))) {
      const clientId = clientIdOfKey(key, OUTGOING_PREFIX)
      this.#counts.set(clientId, (this.#counts.get(clientId) ?? 0) + 1)
    }
    for (const [clientId, count] of this.#counts) if (count > this.#options.max) this.#due.add(clientId)
    await this.#trimDue()
  }

  /** An entry for the client was (or is about to be) queued. */
  added (clientId: string): void {
    const count = (this.#counts.get(clientId) ?? 0) + 1
    this.#counts.set(clientId, count)
    if (count < this.#options.max + this.#slack || this.#options.isConnected(clientId)) return
    this.#due.add(clientId)
    if (this.#scheduled) return
    this.#scheduled = true
    // after the enqueues of this turn: one pass trims them all
    setImmediate(() => {
      this.#scheduled = false
      this.#running = this.#trimDue().catch(this.#options.onError)
    })
  }

  /** Entries of the client left its queue (acknowledged, or an enqueue that failed). */
  removed (clientId: string, count = 1): void {
    // a count of 0 stays until reset(): deleting it per acknowledgement, a
    // queue emptied by every PUBACK, reallocated the Map (transient-map.ts)
    this.#counts.set(clientId, Math.max(0, (this.#counts.get(clientId) ?? 0) - count))
  }

  /** The client's queue is gone (session deleted or expired). */
  reset (clientId: string): void {
    this.#counts.delete(clientId)
    this.#cursors.delete(clientId)
    this.#due.delete(clientId)
  }

  count (clientId: string): number {
    return this.#counts.get(clientId) ?? 0
  }

  /**
   * At CONNECT, once every write of the queue has landed and before it is
   * read: counts the client's entries on disk and deletes the oldest beyond
   * the bound, so the device gets at most `max`, the newest. The count is set
   * from what is on disk (a drift of the in-memory count ends here).
   */
  async reconcile (clientId: string): Promise<void> {
    await this.#serial.run(async () => {
      const keys: string[] = []
      for await (const key of this.#options.db.keys(prefixRange(outgoingPrefix(clientId)))) keys.push(key)
      const dropped = keys.slice(0, Math.max(0, keys.length - this.#options.max))
      if (dropped.length > 0) await this.#options.remove(dropped)
      this.#cursors.delete(clientId)
      this.#due.delete(clientId)
      const left = keys.length - dropped.length
      if (left > 0) this.#counts.set(clientId, left)
      else this.#counts.delete(clientId)
      if (dropped.length > 0) this.#options.onDropped(clientId, dropped.length)
    })
  }

  /** Resolves once the trims asked for so far are done (tests, shutdown). */
  async idle (): Promise<void> {
    await this.#running
    await this.#serial.run(async () => {})
  }

  /** One pass over the clients due: for each still offline, its oldest entries beyond the bound are read and deleted, in one batch. */
  async #trimDue (): Promise<void> {
    await this.#serial.run(async () => {
      const due = [...this.#due]
      this.#due.clear()
      const found = await Promise.all(due.map(async (clientId) => {
        const excess = this.count(clientId) - this.#options.max
        if (excess <= 0 || this.#options.isConnected(clientId)) return []
        const range = prefixRange(outgoingPrefix(clientId))
        const cursor = this.#cursors.get(clientId)
        const keys: string[] = []
        for await (const key of this.#options.db.keys({ ...(cursor === undefined ? { gte: range.gte } : { gt: cursor }), lt: range.lt, limit: excess })) keys.push(key)
        return keys
      }))
      const dropped: string[] = []
      const counts: Array<[string, number]> = []
      due.forEach((clientId, i) => {
        const keys = found[i] ?? []
        // connected while its keys were read: its CONNECT reconciles the queue instead
        if (keys.length === 0 || this.#options.isConnected(clientId)) return
        dropped.push(...keys)
        counts.push([clientId, keys.length])
        this.#cursors.set(clientId, keys[keys.length - 1] as string)
      })
      if (dropped.length === 0) return
      await this.#options.remove(dropped)
      for (const [clientId, count] of counts) {
        this.removed(clientId, count)
        this.#options.onDropped(clientId, count)
      }
    })
  }
}
