/** One write of a LevelDB batch, as `db.batch(ops)` takes it. */
export type BatchOperation =
  | { readonly type: 'put', readonly key: string, readonly value: Buffer }
  | { readonly type: 'del', readonly key: string }

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

/**
 * Group commit: writes asked for while a batch is being written, or during
 * the same event-loop turn, go to LevelDB together as the next batch; each
 * caller's promise settles when that batch is written.
 *
 * A QoS 1 message to 100 persistent subscribers costs a few hundred small
 * writes (queue, in flight, acknowledged); one LevelDB call each meant one
 * thread-pool round trip and one pass through abstract-level each. Batches
 * are written one at a time, in the order asked for, and within a batch only
 * the last operation on a key is kept: a message put in flight and
 * acknowledged before the batch goes out costs its deletes only.
 */
export class GroupCommit {
  readonly #target: BatchTarget
  #open: OpenBatch | undefined
  #writing: Promise<void> | undefined

  constructor (target: BatchTarget) {
    this.#target = target
  }

  async write (operations: readonly BatchOperation[]): Promise<void> {
    if (operations.length === 0) return
    const batch = this.#gathering()
    for (const operation of operations) batch.operations.set(operation.key, operation)
    await batch.written
  }

  /**
   * Takes back an operation on `key` that is still waiting for its batch;
   * true when there was one. For entries nothing needs once they are
   * deleted: whatever an earlier batch wrote under the key stays.
   */
  withdraw (key: string): boolean {
    return this.#open?.operations.delete(key) ?? false
  }

  /** Resolves once everything asked for so far is written (or failed); for reads that must see it. */
  async settled (): Promise<void> {
    const last = this.#open?.written ?? this.#writing
    if (last !== undefined) await last.catch(() => undefined)
  }

  #gathering (): OpenBatch {
    if (this.#open !== undefined) return this.#open
    let resolve!: () => void
    let reject!: (err: unknown) => void
    const written = new Promise<void>((res, rej) => { resolve = res; reject = rej })
    // a write-behind caller may not wait on it; the failure is theirs to report
    written.catch(() => undefined)
    const batch: OpenBatch = { operations: new Map(), written, resolve, reject }
    this.#open = batch
    if (this.#writing === undefined) setImmediate(() => this.#flush())
    return batch
  }

  #flush (): void {
    const batch = this.#open
    if (batch === undefined || this.#writing !== undefined) return
    this.#open = undefined
    const writing = this.#target.batch([...batch.operations.values()], { valueEncoding: 'buffer' })
      .then(() => batch.resolve(), (err: unknown) => batch.reject(err))
    this.#writing = writing
    void writing.finally(() => {
      this.#writing = undefined
      this.#flush()
    })
  }
}
