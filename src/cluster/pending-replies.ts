interface Waiting { resolve (done: boolean): void, reject (err: Error): void, timer: NodeJS.Timeout }

/**
 * This node's requests to other nodes that wait for their reply, by request
 * id. Each settles once: by its reply, its timeout, or the node closing; a
 * reply that comes after the timeout finds nothing and is dropped.
 */
export class PendingReplies {
  readonly #waiting = new Map<string, Waiting>()

  /** Resolves with the reply's result (true: done); rejects with `timedOut()` after `timeoutMs`. */
  async wait (id: string, timeoutMs: number, timedOut: () => Error): Promise<boolean> {
    return await new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id)
        reject(timedOut())
      }, timeoutMs)
      this.#waiting.set(id, { resolve, reject, timer })
    })
  }

  resolve (id: string, done: boolean): void {
    this.#take(id)?.resolve(done)
  }

  reject (id: string, err: Error): void {
    this.#take(id)?.reject(err)
  }

  /** Forgets a request without settling it: nobody waits on it any more. */
  drop (id: string): void {
    this.#take(id)
  }

  /** Rejects every request still waiting, each with its own `error()`. */
  rejectAll (error: () => Error): void {
    for (const id of [...this.#waiting.keys()]) this.reject(id, error())
  }

  #take (id: string): Waiting | undefined {
    const entry = this.#waiting.get(id)
    if (entry === undefined) return undefined
    this.#waiting.delete(id)
    clearTimeout(entry.timer)
    return entry
  }
}
