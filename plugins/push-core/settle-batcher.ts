import { setTimeout as sleep } from 'node:timers/promises'
import type { RelayStore } from './job.js'
import { errorFields, type RelayLogger } from './worker-ports.js'

/**
 * One outbox write for all the jobs settled in the same event-loop turn, not
 * one per job. A failed write is tried again until it works or the worker
 * closes: the jobs were sent, and a job left in the outbox is sent again.
 */
export class SettleBatcher {
  readonly #store: RelayStore
  readonly #logger: RelayLogger
  readonly #signal: AbortSignal
  readonly #closed: () => boolean
  /** ids of settled jobs waiting for the next outbox write, and that write */
  #settled: string[] = []
  #deleting: Promise<void> | undefined

  /** `signal` cuts the pause between attempts short; once `closed()`, a failed write rejects. */
  constructor (store: RelayStore, logger: RelayLogger, signal: AbortSignal, closed: () => boolean) {
    this.#store = store
    this.#logger = logger
    this.#signal = signal
    this.#closed = closed
  }

  /** Resolves once the write that removes `id` (with the others of this turn) is done. */
  async settle (id: string): Promise<void> {
    this.#settled.push(id)
    this.#deleting ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.#settled
      this.#settled = []
      this.#deleting = undefined
      for (let failures = 0; ; failures++) {
        try {
          await this.#store.settle(ids)
          return
        } catch (err) {
          if (this.#closed()) throw err
          if (failures === 0) this.#logger.warn({ jobs: ids.length, ...errorFields(err) }, 'relay outbox: settled jobs not removed yet; trying again')
          await sleep(Math.min(100 * 2 ** failures, 5000), undefined, { signal: this.#signal }).catch(() => {})
        }
      }
    })
    await this.#deleting
  }
}
