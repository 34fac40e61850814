/** One write of a LevelDB batch, as `db.batch(ops)` takes it. */
export type BatchOperation =
  | { readonly type: 'put', readonly key: string, readonly value: Buffer }
  | { readonly type: 'del', readonly key: string }

export interface BatchTarget {
  batch (operations: BatchOperation[], options: { valueEncoding: 'buffer' }): Promise<void>
}

interface Waiter {
  resolve (): void
  reject (err: unknown): void
}

/**
 * Group commit: writes asked for while a batch is being written, or during
 * the same event-loop turn, go to LevelDB together as the next batch. Each
 * caller's promise settles when its operations are written.
 *
 * A QoS 1 message to 100 persistent subscribers costs a few hundred small
 * writes (queue, in-flight, acknowledged); one LevelDB call each meant one
 * thread-pool round trip each. Batches are written one at a time, so writes
 * land in the order they were asked for.
 */
export class GroupCommit {
  readonly #target: BatchTarget
  #operations: BatchOperation[] = []
  #waiters: Waiter[] = []
  #writing = false
  #scheduled = false

  constructor (target: BatchTarget) {
    this.#target = target
  }

  async write (operations: readonly BatchOperation[]): Promise<void> {
    if (operations.length === 0) return
    for (const operation of operations) this.#operations.push(operation)
    const written = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }))
    if (!this.#writing && !this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => {
        this.#scheduled = false
        this.#next()
      })
    }
    await written
  }

  #next (): void {
    if (this.#writing || this.#operations.length === 0) return
    const operations = this.#operations
    const waiters = this.#waiters
    this.#operations = []
    this.#waiters = []
    this.#writing = true
    void this.#target.batch(operations, { valueEncoding: 'buffer' }).then(
      () => { for (const waiter of waiters) waiter.resolve() },
      (err: unknown) => { for (const waiter of waiters) waiter.reject(err) },
    ).finally(() => {
      this.#writing = false
      this.#next()
    })
  }
}
