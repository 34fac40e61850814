import type { DeadLetter, OutboxStorage, RelayJob, RelayStore } from './job.js'

/** Dead letters deleted per write. */
const DELETE_CHUNK = 1000

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
  /** dead letters stored, counted from the storage at the first count, then kept in step */
  #deadCount: number | undefined
  #deadChanges = 0
  /** replays and deletions of dead letters, one at a time: a dead letter read for a replay is not replayed or deleted by another meanwhile */
  #deadLetterOps: Promise<unknown> = Promise.resolve()

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
    this.#deadChanged(1)
  }

  deadLetters (): AsyncIterable<DeadLetter> {
    return this.#storage.deadLetters()
  }

  async listDeadLetters ({ after, limit }: { after?: string, limit: number }): Promise<{ letters: DeadLetter[], next: string | null }> {
    const letters: DeadLetter[] = []
    // one more than asked for tells whether another page follows
    for await (const letter of this.#storage.deadLettersAfter(after, limit + 1)) letters.push(letter)
    const more = letters.length > limit
    if (more) letters.length = limit
    return { letters, next: more ? letters[letters.length - 1]?.id ?? null : null }
  }

  async getDeadLetter (id: string): Promise<DeadLetter | undefined> {
    return await this.#storage.getDeadLetter(id)
  }

  async replayDeadLetter (id: string, revive: (letter: DeadLetter) => RelayJob): Promise<RelayJob | undefined> {
    return await this.#deadLetterOp(async () => {
      const letter = await this.#storage.getDeadLetter(id)
      if (letter === undefined) return undefined
      const job = revive(letter)
      await this.#storage.revive(job)
      this.#deadChanged(-1)
      this.#add([job])
      return job
    })
  }

  async deleteDeadLetters (ids?: readonly string[]): Promise<number> {
    return await this.#deadLetterOp(async () => {
      let found: string[]
      if (ids === undefined) {
        found = []
        for await (const id of this.#storage.deadLetterIds()) found.push(id)
      } else {
        const letters = await Promise.all([...new Set(ids)].map(async (id) => await this.#storage.getDeadLetter(id)))
        found = letters.flatMap((letter) => letter === undefined ? [] : [letter.id])
      }
      // by id, also for all of them: one dead-lettered meanwhile is not counted, so it stays
      for (let start = 0; start < found.length; start += DELETE_CHUNK) await this.#storage.deleteDeadLetters(found.slice(start, start + DELETE_CHUNK))
      this.#deadChanged(-found.length)
      return found.length
    })
  }

  async deadLetterCount (): Promise<number> {
    if (this.#deadCount !== undefined) return this.#deadCount
    const changes = this.#deadChanges
    let count = 0
    for await (const _id of this.#storage.deadLetterIds()) count++
    // kept only when nothing changed while counting (otherwise counted again next time)
    if (this.#deadChanges === changes) this.#deadCount = count
    return count
  }

  #deadChanged (by: number): void {
    this.#deadChanges++
    if (this.#deadCount !== undefined) this.#deadCount += by
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

  async #deadLetterOp<T> (op: () => Promise<T>): Promise<T> {
    const result = this.#deadLetterOps.then(op)
    this.#deadLetterOps = result.catch(() => {})
    return await result
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
