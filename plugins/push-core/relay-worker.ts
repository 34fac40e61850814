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
 * dead letters. Every job stays in the store until it is settled, so a crash
 * loses nothing: `start()` picks up whatever is there.
 */
export class RelayWorker {
  readonly #options: WorkerOptions
  readonly #now: () => number
  readonly #senders = new Map<PushProvider, PushSender>()
  /** Jobs in the outbox, by id: ready, waiting for a retry, or in flight. */
  readonly #jobs = new Map<string, RelayJob>()
  readonly #ready: RelayJob[] = []
  readonly #timers = new Map<string, NodeJS.Timeout>()
  #inFlight = 0
  #pumpScheduled = false
  /** ids of settled jobs waiting for the next outbox write, and that write */
  #settled: string[] = []
  #deleting: Promise<void> | undefined
  #closed = false
  #idleWaiters: Array<() => void> = []
  #drainWaiters: Array<() => void> = []

  constructor (options: WorkerOptions) {
    this.#options = options
    this.#now = options.now ?? Date.now
    for (const sender of options.senders) this.#senders.set(sender.provider, sender)
  }

  /** Jobs not yet settled (the outbox depth). */
  get size (): number {
    return this.#jobs.size
  }

  /** Loads what the outbox holds (jobs left by a crash or a restart) and starts sending. */
  async start (): Promise<void> {
    for await (const job of this.#options.store.loadAll()) this.#schedule(job)
    this.#pump()
  }

  /** Stores jobs durably, then sends them. Resolves once they are stored, not sent. */
  async enqueue (jobs: readonly RelayJob[]): Promise<void> {
    if (jobs.length === 0) return
    await this.#options.store.putMany(jobs)
    for (const job of jobs) this.#schedule(job)
    this.#pump()
  }

  /** Resolves when nothing is ready to send or in flight (jobs waiting for a retry may remain). */
  async idle (): Promise<void> {
    if (this.#isIdle()) return
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
  }

  /** Resolves when the outbox is empty: every job sent, dropped or dead-lettered (retries included). */
  async drain (): Promise<void> {
    if (this.#jobs.size === 0) return
    await new Promise<void>((resolve) => this.#drainWaiters.push(resolve))
  }

  /** Stops sending; resolves once the deliveries in flight are settled. Pending jobs stay in the store. */
  async close (): Promise<void> {
    this.#closed = true
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
    this.#ready.length = 0
    await this.idle()
    await Promise.all([...this.#senders.values()].map(async (sender) => await sender.close()))
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
    if (!this.#pumpScheduled && this.#ready.length > 0) {
      this.#pumpScheduled = true
      setImmediate(() => {
        this.#pumpScheduled = false
        this.#pump()
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
    const attempts = job.attempts + 1
    if (attempts >= this.#options.maxAttempts) {
      logger.warn({ jobId: job.id, installationId: job.installationId, provider, attempts, reason }, 'relay job dead-lettered')
      observer?.deadLettered(provider)
      await this.#options.store.deadLetter({ ...job, attempts }, reason)
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
    await this.#options.store.put(next)
    this.#schedule(next)
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

  /** One outbox write for all the jobs settled in the same event-loop turn, not one per job. */
  async #deleteFromOutbox (id: string): Promise<void> {
    this.#settled.push(id)
    this.#deleting ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.#settled
      this.#settled = []
      this.#deleting = undefined
      await this.#options.store.deleteMany(ids)
    })
    await this.#deleting
  }

  #removed (job: RelayJob): void {
    this.#jobs.delete(job.id)
    if (this.#jobs.size > 0) return
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
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
