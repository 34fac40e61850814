import { setTimeout as sleep } from 'node:timers/promises'
import type { RelayJob } from './job.js'
import { retryDelayMs } from './retry-policy.js'
import { planBatch, sendChunk, type Sendable } from './batch.js'
import { SettleBatcher } from './settle-batcher.js'
import { Signal } from './signal.js'
import type { DeliveryResult, DeviceToken, PushProvider, PushSender } from './types.js'
import { errorFields, type DropReason, type WorkerOptions } from './worker-ports.js'

/**
 * Sends outbox jobs through the provider senders: many in flight at once,
 * FCM in batches, retries with backoff and jitter, token pruning, expiry and
 * dead letters. It takes jobs from the store as it has room for them (never
 * more than `concurrency` ready or in flight, so in a cluster the jobs spread
 * over the nodes that have room), and every job stays in the store until it
 * is settled, so a crash loses nothing: the store hands the jobs out again.
 */
export class RelayWorker {
  readonly #options: WorkerOptions
  readonly #now: () => number
  readonly #senders = new Map<PushProvider, PushSender>()
  /** Jobs this worker took from the outbox, by id: ready, waiting for a retry, or in flight. */
  readonly #jobs = new Map<string, RelayJob>()
  readonly #ready: RelayJob[] = []
  readonly #timers = new Map<string, NodeJS.Timeout>()
  #inFlight = 0
  #pumpScheduled = false
  #closed = false
  readonly #stopTaking = new AbortController()
  readonly #settler: SettleBatcher
  /** the loop that takes jobs from the store, once started */
  #taking: Promise<void> | undefined
  /** a slot freed (or the worker closed), for the take loop */
  readonly #room = new Signal()
  readonly #idle = new Signal()
  /** this worker holds no job any more */
  readonly #drained = new Signal()
  /** a job taken or settled */
  readonly #changes = new Signal()

  constructor (options: WorkerOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
    for (const sender of options.senders) this.#senders.set(sender.provider, sender)
    this.#settler = new SettleBatcher(options.store, options.logger, this.#stopTaking.signal, () => this.#closed)
    options.store.onLost((ids) => this.#lost(ids))
  }

  /** Jobs this worker holds and has not settled (this node's part of the outbox). */
  get size (): number {
    return this.#jobs.size
  }

  /** Starts taking jobs from the outbox (those a crash or a restart left first) and sending them. */
  async start (): Promise<void> {
    this.#startTaking()
  }

  /** Stores jobs durably; a worker takes them from the store. Resolves once they are stored, not sent. */
  async enqueue (jobs: readonly RelayJob[]): Promise<void> {
    if (jobs.length === 0) return
    await this.#options.store.enqueue(jobs)
    this.#startTaking()
  }

  /** Resolves when nothing is ready to send or in flight (jobs waiting for a retry may remain). */
  async idle (): Promise<void> {
    if (this.#isIdle()) return
    await this.#idle.next()
  }

  /**
   * Resolves when the outbox is empty: every job sent, dropped or dead-lettered
   * (retries included), by this worker or, in a cluster, by the others. Asks
   * the store whenever this worker holds nothing, and every 50 ms while only
   * other nodes hold jobs (they tell this one nothing). For tests.
   */
  async drain (): Promise<void> {
    for (;;) {
      if (this.#closed) return
      if (this.#jobs.size > 0) {
        await this.#drained.next()
        continue
      }
      if (await this.#options.store.count() === 0 && this.#jobs.size === 0) return
      await this.#changes.next(50)
    }
  }

  /**
   * Stops sending; resolves once the deliveries in flight are settled and the
   * store is told. Pending jobs stay in the store (for the next start, or for
   * the other nodes of a cluster).
   */
  async close (): Promise<void> {
    this.#closed = true
    this.#stopTaking.abort()
    this.#room.notify()
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
    this.#ready.length = 0
    await this.idle()
    await this.#taking
    await this.#options.store.close()
    await Promise.all([...this.#senders.values()].map(async (sender) => await sender.close()))
  }

  #startTaking (): void {
    if (this.#taking !== undefined || this.#closed) return
    this.#taking = this.#takeLoop()
  }

  /**
   * Takes as many jobs as there is room for (slots free of `concurrency`), so
   * a node never hoards jobs other nodes could send. A store that fails (the
   * database, Redis gone) is asked again after a capped backoff.
   */
  async #takeLoop (): Promise<void> {
    const { store, logger, concurrency } = this.#options
    const signal = this.#stopTaking.signal
    let failures = 0
    while (!this.#closed) {
      const room = concurrency - this.#ready.length - this.#inFlight
      if (room <= 0) {
        await this.#room.next()
        continue
      }
      let jobs: RelayJob[]
      try {
        jobs = await store.take(room, signal)
      } catch (err) {
        if (this.#closed) return
        if (failures === 0) logger.warn(errorFields(err), 'relay outbox unavailable; taking jobs again after a pause')
        failures++
        await sleep(Math.min(100 * 2 ** failures, 5000), undefined, { signal }).catch(() => {})
        continue
      }
      if (failures > 0) logger.info({ failures }, 'relay outbox available again')
      failures = 0
      for (const job of jobs) {
        // a store may hand out a job again that this worker still holds (a late heartbeat): one copy
        if (!this.#jobs.has(job.id)) this.#schedule(job)
      }
      this.#pump()
      this.#changes.notify()
    }
  }

  /** Another node took these jobs over: forget them; one in flight settles without further effect. */
  #lost (ids: readonly string[]): void {
    const lost = new Set(ids)
    let removed = false
    for (const id of lost) {
      const job = this.#jobs.get(id)
      if (job === undefined) continue
      clearTimeout(this.#timers.get(id))
      this.#timers.delete(id)
      this.#options.logger.warn({ jobId: id, installationId: job.installationId }, 'relay job taken over by another node')
      this.#removed(job)
      removed = true
    }
    if (!removed) return
    const kept = this.#ready.filter((job) => !lost.has(job.id))
    this.#ready.length = 0
    this.#ready.push(...kept)
    this.#notifyIdle()
    this.#room.notify()
  }

  /** Whether this worker still owns the job (a lost one is neither retried nor dead-lettered here). */
  #owns (job: RelayJob): boolean {
    return this.#jobs.has(job.id)
  }

  #schedule (job: RelayJob): void {
    if (this.#closed) return
    this.#jobs.set(job.id, job)
    const wait = job.notBefore - this.#now()
    if (wait <= 0) {
      this.#ready.push(job)
      return
    }
    const timer = setTimeout(() => {
      this.#timers.delete(job.id)
      this.#ready.push(job)
      this.#pump()
    }, wait)
    // not unref'd: a pending retry is work to do; close() clears the timers
    this.#timers.set(job.id, timer)
  }

  #pump (): void {
    while (!this.#closed && this.#ready.length > 0 && this.#inFlight < this.#options.concurrency) {
      const batch = this.#ready.splice(0, this.#options.concurrency - this.#inFlight)
      this.#inFlight += batch.length
      void this.#process(batch)
    }
    this.#notifyIdle()
  }

  /**
   * Frees the slots of `n` settled jobs. Each job frees its own slot (a slow
   * delivery holds up no other), and the refill waits for the end of the
   * event-loop turn, so the slots freed by one read of provider answers are
   * refilled as one batch (one token read).
   */
  #release (n: number): void {
    this.#inFlight -= n
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true
      setImmediate(() => {
        this.#pumpScheduled = false
        this.#pump()
        // room for more: the take loop asks the store once for all the slots freed in this turn
        this.#room.notify()
      })
    }
    this.#notifyIdle()
  }

  /** Sends a batch of ready jobs; never rejects, and frees every job's slot exactly once. */
  async #process (batch: RelayJob[]): Promise<void> {
    const units: Array<Promise<void>> = []
    /** one part of the batch: its slots are freed when it is done, whatever happened */
    const unit = (slots: number, work: () => Promise<void>): void => {
      units.push(work()
        .catch((err: unknown) => this.#options.logger.warn({ err }, 'relay batch failed unexpectedly'))
        .finally(() => this.#release(slots)))
    }
    let tokens: ReadonlyArray<DeviceToken | null>
    try {
      tokens = await this.#options.tokens.tokensOf(batch.map((job) => job.installationId))
    } catch (err) {
      // A failed read (e.g. the database) is transient for every job of the batch.
      this.#options.logger.warn({ ...errorFields(err), jobs: batch.length }, 'relay token lookup failed; rescheduling the jobs')
      for (const job of batch) unit(1, async () => await this.#retry(job, 'none', 'token lookup failed'))
      await Promise.all(units)
      return
    }
    const { unsendable, byProvider } = planBatch(batch, tokens, this.#now(), (provider) => this.#senders.has(provider))
    for (const { job, provider, why, detail } of unsendable) unit(1, async () => await this.#settle(job, provider, why, detail))
    for (const [provider, items] of byProvider) {
      const sender = this.#senders.get(provider) as PushSender
      for (let i = 0; i < items.length; i += sender.maxBatch) {
        const chunk = items.slice(i, i + sender.maxBatch)
        unit(chunk.length, async () => await this.#send(sender, chunk))
      }
    }
    await Promise.all(units)
  }

  async #send (sender: PushSender, items: readonly Sendable[]): Promise<void> {
    const { results, latencyMs } = await sendChunk(sender, items, this.#now)
    for (const [i, { job, delivery }] of items.entries()) await this.#handle(job, delivery.token, sender.provider, results[i] as DeliveryResult, latencyMs)
  }

  async #handle (job: RelayJob, token: DeviceToken, provider: PushProvider, result: DeliveryResult, latencyMs: number): Promise<void> {
    const { observer, logger } = this.#options
    switch (result.outcome) {
      case 'sent':
        observer?.sent(provider, latencyMs)
        await this.#forget(job)
        return
      case 'prune':
        logger.info({ installationId: job.installationId, provider, reason: result.reason }, 'push token rejected by the provider; removed from the installation')
        observer?.pruned(provider)
        await this.#options.tokens.prune(job.installationId, token)
        await this.#forget(job)
        return
      case 'drop':
        await this.#settle(job, provider, 'rejected', result.reason)
        return
      case 'retry':
        await this.#retry(job, provider, result.reason, result.retryAfterMs)
    }
  }

  /** A transient failure: tries the job again after a backoff, unless it ran out of attempts or time. */
  async #retry (job: RelayJob, provider: PushProvider | 'none', reason: string, retryAfterMs?: number): Promise<void> {
    const { observer, logger } = this.#options
    if (!this.#owns(job)) return
    const attempts = job.attempts + 1
    if (attempts >= this.#options.maxAttempts) {
      try {
        await this.#options.store.deadLetter({ ...job, attempts }, reason)
      } catch (err) {
        // not stored aside: the job stays with this worker and is tried once more later (and dead-lettered then)
        logger.warn({ jobId: job.id, ...errorFields(err) }, 'relay job could not be dead-lettered; trying it again later')
        if (this.#owns(job)) this.#schedule({ ...job, notBefore: this.#now() + retryDelayMs(attempts, this.#options.policy, retryAfterMs) })
        return
      }
      logger.warn({ jobId: job.id, installationId: job.installationId, provider, attempts, reason }, 'relay job dead-lettered')
      observer?.deadLettered(provider)
      this.#removed(job)
      return
    }
    const notBefore = this.#now() + retryDelayMs(attempts, this.#options.policy, retryAfterMs)
    if (notBefore >= job.expiresAt) {
      await this.#settle(job, provider, 'expired', `expired while retrying (${reason})`)
      return
    }
    observer?.retried(provider)
    const next = { ...job, attempts, notBefore }
    try {
      await this.#options.store.update(next)
    } catch (err) {
      // retried all the same: only a node taking the job over would see fewer attempts
      logger.warn({ jobId: job.id, ...errorFields(err) }, 'relay retry state not stored')
    }
    if (this.#owns(job)) this.#schedule(next)
  }

  /** Gives up on a job for a logged, counted reason. */
  async #settle (job: RelayJob, provider: PushProvider | 'none', why: DropReason, detail: string): Promise<void> {
    this.#options.logger.info({ jobId: job.id, installationId: job.installationId, provider, why, detail }, 'relay job dropped')
    this.#options.observer?.dropped(provider, why)
    await this.#forget(job)
  }

  async #forget (job: RelayJob): Promise<void> {
    await this.#settler.settle(job.id)
    this.#removed(job)
  }

  #removed (job: RelayJob): void {
    this.#jobs.delete(job.id)
    this.#changes.notify()
    if (this.#jobs.size > 0) return
    this.#drained.notify()
  }

  #isIdle (): boolean {
    return this.#ready.length === 0 && this.#inFlight === 0
  }

  #notifyIdle (): void {
    if (!this.#isIdle()) return
    this.#idle.notify()
  }
}
