/** Latency samples in a growable Float64Array (no boxed numbers on the hot path). */
export class Samples {
  #values = new Float64Array(1024)
  #count = 0

  add (value: number): void {
    if (this.#count === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2)
      grown.set(this.#values)
      this.#values = grown
    }
    this.#values[this.#count++] = value
  }

  get count (): number { return this.#count }

  /** Nearest-rank percentiles (p in [0, 100]) of what was added; null when empty. */
  summary (): LatencySummary | null {
    if (this.#count === 0) return null
    const sorted = this.#values.slice(0, this.#count).sort()
    const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number
    return { count: this.#count, p50: at(50), p90: at(90), p99: at(99), max: sorted[sorted.length - 1] as number }
  }
}

export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

export function median (values: readonly number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export function round (value: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
