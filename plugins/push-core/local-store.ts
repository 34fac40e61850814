import type { DeadLetter, OutboxStorage, RelayJob, RelayStore } from './job.js'

/**
 * The outbox of a single process: every job is this process's, so the jobs
 * waiting to be taken are a list in memory over the durable storage. The first
 * `take` loads what the storage holds (jobs left by a crash or a restart).
 */
export function createLocalRelayStore (storage: OutboxStorage): RelayStore {
  return new LocalRelayStore(storage)
}

class LocalRelayStore implements RelayStore {
  readonly #storage: OutboxStorage
  /** ids stored and not settled: a job loaded at start that was also enqueued meanwhile is taken once */
  readonly #known = new Set<string>()
  /** stored, not taken yet */
  #waiting: RelayJob[] = []
  #loading: Promise<void> | undefined
  #wakers = new Set<() => void>()
  #closed = false

  constructor (storage: OutboxStorage) {
    this.#storage = storage
  }

  async enqueue (jobs: readonly RelayJob[]): Promise<void> {
    if (jobs.length === 0) return
    await this.#storage.putMany(jobs)
    this.#add(jobs)
  }

  async take (max: number, signal: AbortSignal): Promise<RelayJob[]> {
    await this.#loaded()
    while (this.#waiting.length === 0) {
      if (signal.aborted || this.#closed) return []
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.#wakers.delete(wake)
          signal.removeEventListener('abort', wake)
          resolve()
        }
        this.#wakers.add(wake)
        signal.addEventListener('abort', wake)
      })
    }
    if (signal.aborted) return []
    return this.#waiting.splice(0, Math.max(1, max))
  }

  async update (job: RelayJob): Promise<void> {
    await this.#storage.put(job)
  }

  async settle (ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return
    await this.#storage.deleteMany(ids)
    for (const id of ids) this.#known.delete(id)
  }

  async deadLetter (job: RelayJob, reason: string): Promise<void> {
    await this.#storage.deadLetter(job, reason)
    this.#known.delete(job.id)
  }

  deadLetters (): AsyncIterable<DeadLetter> {
    return this.#storage.deadLetters()
  }

  async count (): Promise<number> {
    await this.#loaded()
    return this.#known.size
  }

  onLost (): void {
    // one process owns every job: nothing is ever taken over
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#wake()
  }

  /** Loads the stored jobs once; a failed load is tried again by the next call. */
  async #loaded (): Promise<void> {
    try {
      await (this.#loading ??= this.#load())
    } catch (err) {
      this.#loading = undefined
      throw err
    }
  }

  async #load (): Promise<void> {
    const loaded: RelayJob[] = []
    for await (const job of this.#storage.loadAll()) loaded.push(job)
    this.#add(loaded)
  }

  #add (jobs: readonly RelayJob[]): void {
    for (const job of jobs) {
      if (this.#known.has(job.id)) continue
      this.#known.add(job.id)
      this.#waiting.push(job)
    }
    this.#wake()
  }

  #wake (): void {
    for (const wake of [...this.#wakers]) wake()
  }
}
