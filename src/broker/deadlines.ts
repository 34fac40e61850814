import { Multimap } from './multimap.js'

/** setTimeout fires at once for delays above this; a longer wait is re-armed when it ends. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Items that fall due at a time (connections whose token expires), behind one
 * timer for all of them: a Timeout with its closure per connection cost ~400
 * bytes. Deadlines are rounded up to `resolutionMs`, so an item is never due
 * early and at most `resolutionMs` late; items in the same slot share it.
 */
export class Deadlines<T extends object> {
  readonly #resolutionMs: number
  readonly #onDue: (item: T) => void
  readonly #slots = new Multimap<number, T>()
  /** Slot times with items, ascending. */
  readonly #times: number[] = []
  #timer: NodeJS.Timeout | undefined
  #armedFor = Infinity
  #count = 0

  constructor (resolutionMs: number, onDue: (item: T) => void) {
    this.#resolutionMs = resolutionMs
    this.#onDue = onDue
  }

  /** Number of items waiting. */
  get size (): number {
    return this.#count
  }

  /** `item` falls due at `at` (ms since the epoch). */
  add (item: T, at: number): void {
    const time = this.#slotOf(at)
    const isNew = !this.#slots.has(time)
    if (!this.#slots.add(time, item)) return
    this.#count++
    if (isNew) this.#times.splice(this.#indexOf(time), 0, time)
    if (time < this.#armedFor) this.#arm()
  }

  /** Forgets `item`, added with the same `at`. */
  delete (item: T, at: number): void {
    const time = this.#slotOf(at)
    if (!this.#slots.delete(time, item)) return
    this.#count--
    if (this.#slots.has(time)) return
    const index = this.#indexOf(time)
    if (this.#times[index] === time) this.#times.splice(index, 1)
    // the timer stays armed: waking up to nothing due costs less than re-arming on every removal
  }

  #slotOf (at: number): number {
    return Math.ceil(at / this.#resolutionMs) * this.#resolutionMs
  }

  /** Where `time` is or would go in `#times`. */
  #indexOf (time: number): number {
    let low = 0
    let high = this.#times.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if ((this.#times[middle] as number) < time) low = middle + 1
      else high = middle
    }
    return low
  }

  #arm (): void {
    clearTimeout(this.#timer)
    const next = this.#times[0]
    if (next === undefined) {
      this.#timer = undefined
      this.#armedFor = Infinity
      return
    }
    this.#armedFor = next
    this.#timer = setTimeout(() => this.#fire(), Math.min(Math.max(next - Date.now(), 0), MAX_TIMER_MS))
    this.#timer.unref()
  }

  #fire (): void {
    this.#timer = undefined
    this.#armedFor = Infinity
    const now = Date.now()
    let due = 0
    while (due < this.#times.length && (this.#times[due] as number) <= now) due++
    for (const time of this.#times.splice(0, due)) {
      const items = this.#slots.take(time)
      this.#count -= items.length
      for (const item of items) this.#onDue(item)
    }
    if (this.#timer === undefined) this.#arm()
  }
}
