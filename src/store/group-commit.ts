/** One write of a LevelDB batch, as `db.batch(ops)` takes it. */
export type BatchOperation =
  | { readonly type: 'put', readonly key: string, readonly value: Buffer }
  | { readonly type: 'del', readonly key: string }

/**
 * A write no caller waits for. A put may give its value as a function: it is
 * called only if the put is still wanted when it leaves for LevelDB.
 */
export type HeldOperation =
  | BatchOperation
  | { readonly type: 'put', readonly key: string, readonly value: () => Buffer }

export interface BatchTarget {
  batch (operations: BatchOperation[], options: { valueEncoding: 'buffer' }): Promise<void>
}

/** The batch being gathered: its operations by key (the last one asked for wins) and the promise its writers wait on. */
interface OpenBatch {
  readonly operations: Map<string, BatchOperation>
  readonly written: Promise<void>
  resolve (): void
  reject (err: unknown): void
}

/** A batch on its way to the target: its keys, and when it is written (or failed). */
interface WritingBatch {
  readonly operations: ReadonlyMap<string, BatchOperation>
  readonly settled: Promise<void>
}

/**
 * Group commit: writes asked for while a batch is being written, or during
 * the same event-loop turn, go to LevelDB together as the next batch; each
 * caller's promise settles when that batch is written.
 *
 * A QoS 1 message to 100 persistent subscribers costs a few hundred small
 * writes (queue, in flight, acknowledged); one LevelDB call each meant one
 * thread-pool round trip and one pass through abstract-level each. Within a
 * batch only the last operation on a key is kept: a message put in flight
 * and acknowledged before its in-flight writes go out (they are held back,
 * see writeHeld) costs one delete.
 *
 * Batches are written one at a time, in the order asked for, unless
 * `maxWriting` lets more than one be on its way at once (see the
 * constructor): then a batch leaves while earlier ones are still being
 * written only if none of its keys is in any of them. Two writes of one key
 * always reach the target in the order they were asked for; batches with no
 * key in common can land in either order without changing what is stored.
 */
export class GroupCommit {
  readonly #target: BatchTarget
  readonly #holdMs: number
  readonly #onHeldError: (err: unknown) => void
  #open: OpenBatch | undefined
  /** the batches on their way to the target */
  readonly #writing = new Set<WritingBatch>()
  readonly #maxWriting: number
  /** writeHeld() operations by key, waiting for #holdTimer */
  readonly #held = new Map<string, HeldOperation>()
  #holdTimer: NodeJS.Timeout | undefined
  readonly #spacingMs: number
  /** when the last batch left for the target (performance.now()) */
  #lastStart = -Infinity
  /** set while the next batch waits for `spacingMs` to pass since the last one */
  #spacingTimer: NodeJS.Timeout | undefined

  /**
   * `holdMs`: how long writeHeld() operations wait for a later operation on
   * their key to replace them; `onHeldError` hears about a failed batch of
   * them, since no caller waits for those.
   *
   * `spacingMs`: the least time between the starts of two batches. A batch
   * leaves at once when the last one started longer ago than that; otherwise
   * it gathers until then. Every batch costs the same fixed work whatever its
   * size (a thread-pool round trip, and with storage.fsync `batch` an
   * fdatasync: ~130 µs of CPU per batch against ~1 µs per operation, measured
   * with 6-operation batches on this machine). Without spacing, a connect
   * storm's claims left as soon as the previous batch was on disk: 1,757
   * batches of 5.7 operations for 5,000 CONNECTs. 0: no spacing.
   *
   * `maxWriting`: how many batches may be on their way to the target at once
   * (1: one at a time). With more, a batch gathered while another is being
   * written leaves once `spacingMs` allows, instead of after that write's
   * callback has run on the event loop: while a storm of CONNECTs keeps the
   * loop busy, that callback waits behind the CONNECTs being read, and the
   * claims gathered meanwhile waited with it. LevelDB itself puts writes
   * that arrive together into one log write and one fdatasync.
   */
  constructor (target: BatchTarget, { holdMs = 1000, onHeldError = () => {}, spacingMs = 0, maxWriting = 1 }: { holdMs?: number, onHeldError?: (err: unknown) => void, spacingMs?: number, maxWriting?: number } = {}) {
    this.#target = target
    this.#spacingMs = spacingMs
    this.#maxWriting = maxWriting
    this.#holdMs = holdMs
    this.#onHeldError = onHeldError
  }

  async write (operations: readonly BatchOperation[]): Promise<void> {
    if (operations.length === 0) return
    const batch = this.#gathering()
    for (const operation of operations) {
      // asked for later, so it replaces a held operation on the key
      this.#held.delete(operation.key)
      batch.operations.set(operation.key, operation)
    }
    await batch.written
  }

  /**
   * Writes held back for `holdMs` before they join a batch, for state that
   * changes again soon and that no caller waits for: a QoS 1 message's
   * in-flight entry is usually acknowledged, and deleted, within
   * milliseconds, and then neither the entry's puts nor their encoding
   * happen at all. settled() waits for them too.
   */
  writeHeld (operations: readonly HeldOperation[]): void {
    for (const operation of operations) this.#held.set(operation.key, operation)
    // unref'd: held writes never keep a process alive (shutdown sends them with settled())
    this.#holdTimer ??= setTimeout(() => this.#releaseHeld(), this.#holdMs).unref()
  }

  /**
   * Takes back an operation on `key` that is still waiting for its batch
   * (held or not); true when there was one. For entries nothing needs once
   * they are deleted: whatever an earlier batch wrote under the key stays.
   */
  withdraw (key: string): boolean {
    const held = this.#held.delete(key)
    const open = this.#open?.operations.delete(key) ?? false
    return held || open
  }

  /** Resolves once everything asked for so far, held operations included, is written (or failed); for reads that must see it. */
  async settled (): Promise<void> {
    this.#releaseHeld()
    const pending = [...this.#writing].map((batch) => batch.settled)
    if (this.#open !== undefined) pending.push(this.#open.written.catch(() => undefined))
    await Promise.all(pending)
  }

  /** The held operations join the batch being gathered. */
  #releaseHeld (): void {
    clearTimeout(this.#holdTimer)
    this.#holdTimer = undefined
    if (this.#held.size === 0) return // withdrawn or replaced by later writes
    const batch = this.#gathering()
    for (const [key, operation] of this.#held) {
      batch.operations.set(key, operation.type === 'put' && typeof operation.value === 'function' ? { type: 'put', key, value: operation.value() } : operation as BatchOperation)
    }
    this.#held.clear()
    batch.written.catch(this.#onHeldError)
  }

  #gathering (): OpenBatch {
    if (this.#open !== undefined) return this.#open
    const { promise: written, resolve, reject } = deferred()
    const batch: OpenBatch = { operations: new Map(), written, resolve, reject }
    this.#open = batch
    if (this.#writing.size < this.#maxWriting && this.#spacingTimer === undefined) setImmediate(() => this.#flush())
    return batch
  }

  /** Whether the batch has a key that a batch still on its way writes: it must land after that one. */
  #overlapsWriting (operations: ReadonlyMap<string, BatchOperation>): boolean {
    for (const writing of this.#writing) {
      for (const key of operations.keys()) if (writing.operations.has(key)) return true
    }
    return false
  }

  #flush (): void {
    const batch = this.#open
    if (batch === undefined || this.#spacingTimer !== undefined) return
    // the end of a write calls #flush again
    if (this.#writing.size >= this.#maxWriting || this.#overlapsWriting(batch.operations)) return
    const wait = this.#lastStart + this.#spacingMs - performance.now()
    if (wait > 0) {
      this.#spacingTimer = setTimeout(() => {
        this.#spacingTimer = undefined
        this.#flush()
      }, wait)
      return
    }
    this.#lastStart = performance.now()
    this.#open = undefined
    const settled = this.#target.batch([...batch.operations.values()], { valueEncoding: 'buffer' })
      .then(() => batch.resolve(), (err: unknown) => batch.reject(err))
    const writing: WritingBatch = { operations: batch.operations, settled }
    this.#writing.add(writing)
    void settled.finally(() => {
      this.#writing.delete(writing)
      this.#flush()
    })
  }
}

interface Deferred {
  readonly promise: Promise<void>
  resolve (): void
  reject (err: unknown): void
}

function deferred (): Deferred {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  // a write-behind caller may not wait on it; the failure is theirs to report
  promise.catch(() => undefined)
  return { promise, resolve, reject }
}
