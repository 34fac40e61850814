interface Waiter {
  readonly exclusive: boolean
  readonly grant: () => void
}

/**
 * A readers-writer lock per key: many shared holders or one exclusive one,
 * granted in arrival order (a waiting exclusive request holds back later
 * shared ones, so it is not starved). Keys without holders or waiters are
 * forgotten.
 */
export class KeyedLocks {
  readonly #locks = new Map<string, { shared: number, exclusive: boolean, queue: Waiter[] }>()

  async shared<T> (key: string, step: () => Promise<T>): Promise<T> {
    return await this.#run(key, false, step)
  }

  async exclusive<T> (key: string, step: () => Promise<T>): Promise<T> {
    return await this.#run(key, true, step)
  }

  /** Keys currently held or waited for (tests). */
  get size (): number {
    return this.#locks.size
  }

  async #run<T> (key: string, exclusive: boolean, step: () => Promise<T>): Promise<T> {
    await this.#acquire(key, exclusive)
    try {
      return await step()
    } finally {
      this.#release(key, exclusive)
    }
  }

  async #acquire (key: string, exclusive: boolean): Promise<void> {
    let lock = this.#locks.get(key)
    if (lock === undefined) {
      lock = { shared: 0, exclusive: false, queue: [] }
      this.#locks.set(key, lock)
    }
    const free = lock.queue.length === 0 && !lock.exclusive && (!exclusive || lock.shared === 0)
    if (free) {
      if (exclusive) lock.exclusive = true
      else lock.shared++
      return
    }
    const held = lock
    await new Promise<void>((resolve) => held.queue.push({
      exclusive,
      grant: () => {
        if (exclusive) held.exclusive = true
        else held.shared++
        resolve()
      },
    }))
  }

  #release (key: string, exclusive: boolean): void {
    const lock = this.#locks.get(key)
    if (lock === undefined) return
    if (exclusive) lock.exclusive = false
    else lock.shared--
    while (!lock.exclusive) {
      const next = lock.queue[0]
      if (next === undefined) break
      if (next.exclusive && lock.shared > 0) break
      lock.queue.shift()
      next.grant()
      if (next.exclusive) break
    }
    if (lock.shared === 0 && !lock.exclusive && lock.queue.length === 0) this.#locks.delete(key)
  }
}
