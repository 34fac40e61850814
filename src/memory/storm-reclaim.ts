import type { Logger } from 'pino'

export interface StormReclaimOptions {
  /** a storm this large (connections admitted) is followed by a reclaim; 0: never */
  readonly connections: number
  /** how often the storm is looked at; a period with few new connections ends it */
  readonly quietMs: number
}

export interface Reclaimed {
  /** connections admitted during the storm */
  readonly connections: number
  readonly pauseMs: number
  readonly heapUsedBefore: number
  readonly heapUsedAfter: number
  readonly rssBefore: number
  readonly rssAfter: number
}

/**
 * One full garbage collection once a storm of new connections is over: a
 * fleet reconnecting after an outage, a deploy or a network cut.
 *
 * Why: while hundreds of CONNECTs are in flight, what each one allocates
 * (packets, promises, store commands and replies) lives long enough to be
 * promoted to V8's old generation, where only a full collection frees it.
 * After the storm the process is busy enough (every device pings) that V8's
 * memory reducer never starts one, and old-generation growth is what would
 * trigger it, so that garbage stays in the heap, resident, for as long as
 * the devices stay connected: measured at 19,700 connections, 15.2 kB of
 * RSS per connection against 10.5 kB once collected (bench/RESULTS.md,
 * `memory-reclaim`). The pause, 0.4 s there, is paid once per storm, when
 * the storm is over, instead of keeping the memory.
 *
 * A storm is a run of periods of `quietMs` with at least a twentieth of
 * `connections` new connections each; a period with fewer ends it, and a
 * storm of at least `connections` is then reclaimed. Devices trickling in
 * slower than that (ordinary churn) never make a storm.
 */
export class StormReclaim {
  readonly #options: StormReclaimOptions
  readonly #collect: () => Promise<void>
  readonly #logger: Logger
  readonly #onReclaim: ((reclaimed: Reclaimed) => void) | undefined
  /** connections admitted in the current period */
  #period = 0
  /** connections admitted in the storm's busy periods so far */
  #storm = 0
  /** the collection under way: one at a time, and stop() waits for it */
  #collecting: Promise<unknown> = Promise.resolve()
  #timer: NodeJS.Timeout | undefined

  constructor (options: StormReclaimOptions, collect: () => Promise<void>, logger: Logger, onReclaim?: (reclaimed: Reclaimed) => void) {
    this.#options = options
    this.#collect = collect
    this.#logger = logger
    this.#onReclaim = onReclaim
  }

  get enabled (): boolean { return this.#options.connections > 0 }

  start (): void {
    if (!this.enabled || this.#timer !== undefined) return
    this.#timer = setInterval(() => { void this.endPeriod() }, this.#options.quietMs)
    // nothing to wait for at exit
    this.#timer.unref()
  }

  /** Stops looking at storms; resolves once a collection under way is done. */
  async stop (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#collecting
  }

  /** A connection was admitted. */
  connectionOpened (): void {
    this.#period++
  }

  /**
   * Ends a period of `quietMs` (the timer calls it; tests too): a busy one
   * grows the storm, a quiet one ends it. Resolves what a collection
   * reclaimed, undefined when there was none.
   */
  async endPeriod (): Promise<Reclaimed | undefined> {
    const { connections } = this.#options
    const admitted = this.#period
    this.#period = 0
    if (!this.enabled) return undefined
    if (admitted >= connections / 20) {
      this.#storm += admitted
      return undefined
    }
    const storm = this.#storm
    this.#storm = 0
    if (storm < connections) return undefined
    const reclaiming = this.#reclaim(storm)
    this.#collecting = reclaiming.catch(() => {})
    return await reclaiming
  }

  async #reclaim (connections: number): Promise<Reclaimed | undefined> {
    const before = process.memoryUsage()
    const start = performance.now()
    try {
      await this.#collect()
    } catch (err) {
      this.#logger.warn({ err }, 'collecting garbage after a storm of new connections failed')
      return undefined
    }
    const pauseMs = performance.now() - start
    const after = process.memoryUsage()
    const reclaimed: Reclaimed = { connections, pauseMs, heapUsedBefore: before.heapUsed, heapUsedAfter: after.heapUsed, rssBefore: before.rss, rssAfter: after.rss }
    const mb = (bytes: number): number => Math.round(bytes / 2 ** 20)
    this.#logger.info({
      connections,
      pauseMs: Math.round(pauseMs),
      heapUsedMB: [mb(reclaimed.heapUsedBefore), mb(reclaimed.heapUsedAfter)],
      rssMB: [mb(reclaimed.rssBefore), mb(reclaimed.rssAfter)],
    }, 'a storm of new connections is over: garbage collected')
    this.#onReclaim?.(reclaimed)
    return reclaimed
  }
}
