/** Waiters that are all let go together at the next `notify()`: the worker's idle, drain, room and change events. */
export class Signal {
  #waiters: Array<() => void> = []

  /** Resolves at the next `notify()`, or after `ms` when given. */
  async next (ms?: number): Promise<void> {
    await new Promise<void>((resolve) => {
      if (ms === undefined) {
        this.#waiters.push(resolve)
        return
      }
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.#waiters.push(done)
    })
  }

  notify (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const resolve of waiters) resolve()
  }
}
