import { setTimeout as sleep } from 'node:timers/promises'
import type { RelayJob, RelayStore } from './job.js'
import { retryDelayMs, type RetryPolicy } from './retry-policy.js'
import type { Delivery, DeliveryResult, DeviceToken, PushProvider, PushSender } from './types.js'

/** What the worker needs to know about installations, at send time (tokens change and get pruned). */
export interface TokenDirectory {
  /** The push token of each installation now (null: none), in order: one read for a whole batch. */
  tokensOf (installationIds: readonly string[]): Promise<ReadonlyArray<DeviceToken | null>>
  /** Removes `token` from the installation, unless it has been replaced meanwhile. */
  prune (installationId: string, token: DeviceToken): Promise<void>
}

/** Counts outcomes (metrics) without the relay knowing about Prometheus. */
export interface RelayObserver {
  sent (provider: PushProvider, latencyMs: number): void
  /** 'none': the failure came before a provider was known (the token lookup). */
  retried (provider: PushProvider | 'none'): void
  pruned (provider: PushProvider): void
  dropped (provider: PushProvider | 'none', why: DropReason): void
  deadLettered (provider: PushProvider | 'none'): void
}

/** Why a job was given up, as a small fixed set (a metric label). */
export type DropReason = 'expired' | 'no-token' | 'disabled' | 'not-configured' | 'rejected'

export interface RelayLogger {
  info (fields: object, message: string): void
  warn (fields: object, message: string): void
}

export interface WorkerOptions {
  readonly store: RelayStore
  readonly senders: readonly PushSender[]
  readonly tokens: TokenDirectory
  readonly policy: RetryPolicy
  /** Deliveries in flight at once, all providers together. */
  readonly concurrency: number
  readonly maxAttempts: number
  readonly logger: RelayLogger
  readonly observer?: RelayObserver
  readonly now?: () => number
}

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
  /** ids of settled jobs waiting for the next outbox write, and that write */
  #settled: string[] = []
  #deleting: Promise<void> | undefined
  #closed = false
  readonly #stopTaking = new AbortController()
  /** the loop that takes jobs from the store, once started */
  #taking: Promise<void> | undefined
  #roomWaiter: (() => void) | undefined
  #idleWaiters: Array<() => void> = []
  #drainWaiters: Array<() => void> = []
  #changeWaiters: Array<() => void> = []

  constructor (options: WorkerOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
    for (const sender of options.senders) this.#senders.set(sender.provider, sender)
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
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
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
        await new Promise<void>((resolve) => this.#drainWaiters.push(resolve))
        continue
      }
      if (await this.#options.store.count() === 0 && this.#jobs.size === 0) return
      await this.#nextChange(50)
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
    this.#roomWaiter?.()
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
        await new Promise<void>((resolve) => { this.#roomWaiter = resolve })
        this.#roomWaiter = undefined
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
      this.#changed()
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
    this.#roomWaiter?.()
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
        this.#roomWaiter?.()
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
      // A failed read (e.g. the database) is transient for every job of the batch. Only the
      // error's name and code are logged: a decode error's message can quote a stored record,
      // push token included.
      const { name, code } = err instanceof Error ? err as Error & { code?: unknown } : { name: typeof err, code: undefined }
      this.#options.logger.warn({ error: name, code, jobs: batch.length }, 'relay token lookup failed; rescheduling the jobs')
      for (const job of batch) unit(1, async () => await this.#retry(job, 'none', 'token lookup failed'))
      await Promise.all(units)
      return
    }
    const byProvider = new Map<PushProvider, Array<{ job: RelayJob, delivery: Delivery }>>()
    batch.forEach((job, i) => {
      const token = tokens[i] ?? null
      if (this.#now() >= job.expiresAt) {
        unit(1, async () => await this.#settle(job, 'none', 'expired', 'the message ttl ran out'))
        return
      }
      if (token === null) {
        unit(1, async () => await this.#settle(job, 'none', 'no-token', 'the installation has no push token'))
        return
      }
      const disabled = token.provider === 'fcm' ? job.content.kind === 'push' && job.content.fcm?.enabled === false : job.content.kind === 'push' && job.content.apns?.enabled === false
      if (disabled) {
        unit(1, async () => await this.#settle(job, token.provider, 'disabled', `${token.provider} disabled for this message`))
        return
      }
      if (!this.#senders.has(token.provider)) {
        unit(1, async () => await this.#settle(job, token.provider, 'not-configured', `push.${token.provider} is not configured`))
        return
      }
      let list = byProvider.get(token.provider)
      if (list === undefined) byProvider.set(token.provider, list = [])
      list.push({ job, delivery: { jobId: job.id, token, content: job.content, expiresAt: job.expiresAt } })
    })
    for (const [provider, items] of byProvider) {
      const sender = this.#senders.get(provider) as PushSender
      for (let i = 0; i < items.length; i += sender.maxBatch) {
        const chunk = items.slice(i, i + sender.maxBatch)
        unit(chunk.length, async () => await this.#send(sender, chunk))
      }
    }
    await Promise.all(units)
  }

  async #send (sender: PushSender, items: Array<{ job: RelayJob, delivery: Delivery }>): Promise<void> {
    const started = this.#now()
    let results: DeliveryResult[]
    try {
      results = await sender.send(items.map((item) => item.delivery))
    } catch (err) {
      // a sender reports failures per delivery; a throw is a bug or an outage of the whole call
      const reason = err instanceof Error ? err.message : 'send failed'
      results = items.map((item) => ({ jobId: item.job.id, outcome: 'retry', reason }))
    }
    const latency = this.#now() - started
    const byJob = new Map(results.map((result) => [result.jobId, result]))
    for (const { job, delivery } of items) {
      const result = byJob.get(job.id) ?? { jobId: job.id, outcome: 'retry', reason: 'no result from sender' }
      await this.#handle(job, delivery.token, sender.provider, result, latency)
    }
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
    await this.#deleteFromOutbox(job.id)
    this.#removed(job)
  }

  /**
   * One outbox write for all the jobs settled in the same event-loop turn, not
   * one per job. A failed write is tried again until it works or the worker
   * closes: the jobs were sent, and a job left in the outbox is sent again.
   */
  async #deleteFromOutbox (id: string): Promise<void> {
    this.#settled.push(id)
    this.#deleting ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.#settled
      this.#settled = []
      this.#deleting = undefined
      for (let failures = 0; ; failures++) {
        try {
          await this.#options.store.settle(ids)
          return
        } catch (err) {
          if (this.#closed) throw err
          if (failures === 0) this.#options.logger.warn({ jobs: ids.length, ...errorFields(err) }, 'relay outbox: settled jobs not removed yet; trying again')
          await sleep(Math.min(100 * 2 ** failures, 5000), undefined, { signal: this.#stopTaking.signal }).catch(() => {})
        }
      }
    })
    await this.#deleting
  }

  #removed (job: RelayJob): void {
    this.#jobs.delete(job.id)
    this.#changed()
    if (this.#jobs.size > 0) return
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** Resolves at the next job taken or settled, or after `ms`. */
  async #nextChange (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.#changeWaiters.push(done)
    })
  }

  #changed (): void {
    const waiters = this.#changeWaiters
    this.#changeWaiters = []
    for (const resolve of waiters) resolve()
  }

  #isIdle (): boolean {
    return this.#ready.length === 0 && this.#inFlight === 0
  }

  #notifyIdle (): void {
    if (!this.#isIdle()) return
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }
}

/** Only an error's name and code go to the log: a decode error's message can quote a stored record, push token included. */
function errorFields (err: unknown): { error: string, code: unknown } {
  return err instanceof Error ? { error: err.name, code: (err as Error & { code?: unknown }).code } : { error: typeof err, code: undefined }
}
