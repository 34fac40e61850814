/**
 * The longest gap between two ticks of the load generator's own timer. A
 * latency sample spans the generator's write and its read: while this
 * process does not run (its own collection, a VM that stops both cores),
 * messages wait in its socket whatever the broker does, and every sample of
 * the moment carries the gap.
 */
export class StallWatch {
  #last: number | undefined
  #longest = 0

  tick (now: number): void {
    if (this.#last !== undefined) this.#longest = Math.max(this.#longest, now - this.#last)
    this.#last = now
  }

  /** the longest gap between two ticks so far, in ms */
  get longestMs (): number {
    return this.#longest
  }
}
