/**
 * Runs async read-modify-write steps one at a time. LevelDB has no
 * transactions; within one process this is what keeps two requests from
 * interleaving their reads and writes.
 */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve()

  async run<T> (step: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(step, step)
    this.#tail = result.catch(() => undefined)
    return await result
  }
}
