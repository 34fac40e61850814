import t, { type Test } from 'tap'
import { createLocalRelayStore, createPushRelay, retryDelayMs, type DeadLetter, type Delivery, type DeliveryResult, type DeviceToken, type OutboxStorage, type PushSender, type RelayContent, type RelayJob, type RelayStore } from '../../../plugins/push-core/index.js'

/**
 * In-memory storage under the single-process outbox (createLocalRelayStore);
 * the LevelDB one and the Redis store run test/contracts/relay-store.test.ts.
 */
class MemoryStore implements OutboxStorage {
  readonly jobs = new Map<string, RelayJob>()
  readonly dead: DeadLetter[] = []
  /** the size of every deleteMany call: one outbox write each */
  readonly deleteWrites: number[] = []
  async putMany (list: readonly RelayJob[]): Promise<void> { for (const job of list) this.jobs.set(job.id, job) }
  async put (job: RelayJob): Promise<void> { this.jobs.set(job.id, job) }
  async deleteMany (ids: readonly string[]): Promise<void> {
    this.deleteWrites.push(ids.length)
    for (const id of ids) this.jobs.delete(id)
  }

  async deadLetter (job: RelayJob, reason: string): Promise<void> { this.jobs.delete(job.id); this.dead.push({ ...job, reason, deadAt: Date.now() }) }
  async * loadAll (): AsyncIterable<RelayJob> { yield * [...this.jobs.values()] }
  async * deadLetters (): AsyncIterable<DeadLetter> { yield * this.dead }
  async * deadLettersAfter (after: string | undefined, limit: number): AsyncIterable<DeadLetter> {
    yield * this.dead.filter((d) => after === undefined || d.id > after).sort((a, b) => a.id < b.id ? -1 : 1).slice(0, limit)
  }

  async getDeadLetter (id: string): Promise<DeadLetter | undefined> { return this.dead.find((d) => d.id === id) }
  async revive (job: RelayJob): Promise<void> {
    this.jobs.set(job.id, job)
    this.dead.splice(this.dead.findIndex((d) => d.id === job.id), 1)
  }

  async deleteDeadLetters (ids: readonly string[]): Promise<void> {
    for (const id of ids) this.dead.splice(this.dead.findIndex((d) => d.id === id), 1)
  }

  async * deadLetterIds (): AsyncIterable<string> { yield * this.dead.map((d) => d.id) }
}

/** A sender whose answers the test scripts per token; it records every batch it got. */
class ScriptedSender implements PushSender {
  readonly batches: Delivery[][] = []
  answer: (delivery: Delivery, attempt: number) => DeliveryResult['outcome'] | DeliveryResult = () => 'sent'
  readonly #attempts = new Map<string, number>()
  constructor (readonly provider: 'fcm' | 'apns', readonly maxBatch: number) {}
  async send (deliveries: readonly Delivery[]): Promise<DeliveryResult[]> {
    this.batches.push([...deliveries])
    return deliveries.map((delivery) => {
      const attempt = (this.#attempts.get(delivery.jobId) ?? 0) + 1
      this.#attempts.set(delivery.jobId, attempt)
      const answer = this.answer(delivery, attempt)
      return typeof answer === 'string' ? { jobId: delivery.jobId, outcome: answer, reason: 'scripted' } as DeliveryResult : answer
    })
  }

  async close (): Promise<void> {}
}

const content: RelayContent = { kind: 'push', messageId: 'm1', topic: 'users/alice/inbox', notification: { title: 'hi' }, data: {} }

function setup (t: Test, options: { tokens?: Record<string, DeviceToken>, connected?: string[], pushOnly?: string[], forbidden?: string[], maxAttempts?: number, concurrency?: number, apnsSender?: PushSender, failedTokenReads?: number, wrapStore?: (store: RelayStore) => RelayStore } = {}) {
  const store = new MemoryStore()
  const warnings: Array<{ fields: object, message: string }> = []
  const fcm = new ScriptedSender('fcm', 500)
  const apns = new ScriptedSender('apns', 1)
  const tokens = new Map(Object.entries(options.tokens ?? {}))
  const pruned: string[] = []
  /** the ids of every tokensOf and mayReceive call: one installation read each */
  const reads = { tokensOf: [] as string[][], mayReceive: [] as string[][] }
  const counts = { sent: 0, retried: 0, pruned: 0, dropped: [] as string[], dead: 0 }
  const relay = createPushRelay({
    logger: { info () {}, warn: (fields, message) => { warnings.push({ fields, message }) } },
    store: options.wrapStore?.(createLocalRelayStore(store)) ?? createLocalRelayStore(store),
    senders: [fcm, options.apnsSender ?? apns],
    tokens: {
      tokensOf: async (ids) => {
        reads.tokensOf.push([...ids])
        if (reads.tokensOf.length <= (options.failedTokenReads ?? 0)) {
          // what a corrupt record could say: the error must not reach the log
          throw new Error('installations: cannot decode {"pushToken":{"token":"secret-token"}}')
        }
        return ids.map((id) => tokens.get(id) ?? null)
      },
      prune: async (id) => { pruned.push(id); tokens.delete(id) },
    },
    recipients: {
      hasPushToken: (id) => tokens.has(id),
      isPushOnly: (id) => options.pushOnly?.includes(id) ?? false,
      isConnected: (id) => options.connected?.includes(id) ?? false,
      mayReceive: async (ids) => {
        reads.mayReceive.push([...ids])
        return ids.map((id) => !(options.forbidden?.includes(id) ?? false))
      },
    },
    settings: { defaultTtlSec: 3600, maxAttempts: options.maxAttempts ?? 5, concurrency: options.concurrency ?? 1000, retryBaseMs: 1, retryMaxMs: 4 },
    observer: {
      sent: () => counts.sent++,
      retried: () => counts.retried++,
      pruned: () => counts.pruned++,
      dropped: (_p, why) => counts.dropped.push(why),
      deadLettered: () => counts.dead++,
    },
  })
  t.teardown(async () => await relay.close())
  return { store, fcm, apns, relay, pruned, counts, tokens, reads, warnings }
}

const fcmToken = (token: string): DeviceToken => ({ provider: 'fcm', token, environment: 'production', apnsTopic: null })
const apnsToken = (token: string): DeviceToken => ({ provider: 'apns', token, environment: 'production', apnsTopic: null })

/** Resolves once the outbox is empty (retries included). */
async function settled (relay: { drain (): Promise<void> }): Promise<void> {
  await relay.drain()
}

t.test('only offline installations with a token get a job; push-only ones always', async (t) => {
  const { relay, fcm, store } = setup(t, {
    tokens: { offline: fcmToken('a'), online: fcmToken('b'), pushonly: fcmToken('c') },
    connected: ['online', 'pushonly'],
    pushOnly: ['pushonly'],
  })
  const created = await relay.routed(['offline', 'online', 'pushonly', 'no-token', 'offline'], content)
  t.equal(created, 2, 'deduplicated, connected and token-less skipped')
  t.equal(store.jobs.size, 2, 'jobs are in the outbox before sending')
  await settled(relay)
  t.same(fcm.batches.flat().map((d) => d.token.token).sort(), ['a', 'c'])
  t.equal(store.jobs.size, 0, 'sent jobs leave the outbox')
})

t.test('no job for an installation whose owner may not read the topic', async (t) => {
  const { relay, fcm } = setup(t, { tokens: { allowed: fcmToken('a'), foreign: fcmToken('b') }, forbidden: ['foreign'] })
  t.equal(await relay.routed(['allowed', 'foreign'], content), 1)
  await settled(relay)
  t.same(fcm.batches.flat().map((d) => d.token.token), ['a'])
})

t.test('FCM deliveries go in batches of at most maxBatch', async (t) => {
  const tokens: Record<string, DeviceToken> = {}
  for (let i = 0; i < 1200; i++) tokens[`i${i}`] = fcmToken(`t${i}`)
  const { relay, fcm, counts } = setup(t, { tokens })
  await relay.routed(Object.keys(tokens), content)
  await settled(relay)
  t.ok(fcm.batches.every((batch) => batch.length <= 500))
  t.equal(fcm.batches.flat().length, 1200)
  t.equal(counts.sent, 1200)
})

t.test('transient failures are retried until sent; permanent ones prune the token', async (t) => {
  const { relay, apns, pruned, counts, store } = setup(t, { tokens: { flaky: apnsToken('f'), dead: apnsToken('d') } })
  apns.answer = (delivery, attempt) => delivery.token.token === 'd' ? 'prune' : attempt < 3 ? 'retry' : 'sent'
  await relay.routed(['flaky', 'dead'], content)
  await settled(relay)
  t.same(pruned, ['dead'])
  t.equal(counts.retried, 2)
  t.equal(counts.sent, 1)
  t.equal(counts.pruned, 1)
  t.equal(store.jobs.size, 0)
})

t.test('a job that keeps failing is dead-lettered after maxAttempts', async (t) => {
  const { relay, apns, store, counts } = setup(t, { tokens: { x: apnsToken('x') }, maxAttempts: 3 })
  apns.answer = () => 'retry'
  await relay.routed(['x'], content)
  await settled(relay)
  t.equal(store.dead.length, 1)
  t.equal(store.dead[0]?.attempts, 3)
  t.equal(counts.dead, 1)
})

t.test('a failed token read retries the whole batch like a transient send failure', async (t) => {
  // before the fix the batch was never retried nor settled: drain() hung, and this failed by timeout
  t.setTimeout(10_000)
  const { relay, fcm, store, counts, reads, warnings } = setup(t, { tokens: { a: fcmToken('a'), b: fcmToken('b') }, failedTokenReads: 1 })
  await relay.routed(['a', 'b'], content)
  await settled(relay)
  t.same(reads.tokensOf[0], ['a', 'b'], 'one read for the batch, which failed')
  t.same(fcm.batches.flat().map((d) => d.token.token).sort(), ['a', 'b'], 'both jobs sent once the read works again')
  t.equal(counts.retried, 2)
  t.equal(counts.sent, 2)
  t.equal(store.jobs.size, 0, 'the outbox is empty')
  t.equal(relay.depth, 0)
  t.equal(warnings.length, 1)
  t.match(warnings[0], { fields: { jobs: 2 }, message: /token lookup failed/ })
  t.notOk(JSON.stringify(warnings, (_key, value: unknown) => value instanceof Error ? { ...value, message: value.message, stack: value.stack } : value).includes('secret-token'), 'no token in the log')
})

t.test('a token read that keeps failing dead-letters the job after maxAttempts', async (t) => {
  t.setTimeout(10_000)
  const { relay, fcm, store, counts, reads } = setup(t, { tokens: { x: fcmToken('x') }, maxAttempts: 3, failedTokenReads: Infinity })
  await relay.routed(['x'], content)
  await settled(relay)
  t.equal(reads.tokensOf.length, 3, 'one read per attempt')
  t.equal(fcm.batches.length, 0)
  t.equal(store.dead.length, 1)
  t.equal(store.dead[0]?.attempts, 3)
  t.notOk(store.dead[0]?.reason.includes('secret-token'), 'no token in the dead letter')
  t.equal(counts.dead, 1)
  t.equal(counts.retried, 2)
  t.equal(store.jobs.size, 0)
})

t.test('expired jobs, disabled networks and unconfigured providers are dropped with a reason', async (t) => {
  const { relay, counts, fcm } = setup(t, { tokens: { a: fcmToken('a') } })
  await relay.routed(['a'], content, 0)
  await relay.routed(['a'], { ...content, fcm: { enabled: false } })
  await settled(relay)
  t.same(counts.dropped.sort(), ['disabled', 'expired'])
  t.equal(fcm.batches.length, 0)
})

t.test('one installation read per routed message and per batch, not per job', async (t) => {
  const tokens: Record<string, DeviceToken> = {}
  for (let i = 0; i < 300; i++) tokens[`i${i}`] = apnsToken(`t${i}`)
  const { relay, apns, reads } = setup(t, { tokens, forbidden: ['i7'] })
  t.equal(await relay.routed(Object.keys(tokens), content), 299)
  t.same(reads.mayReceive, [Object.keys(tokens)], 'every recipient asked about in one call')
  await settled(relay)
  t.equal(apns.batches.length, 299, 'APNs still sends one delivery per request')
  t.same(reads.tokensOf, [Object.keys(tokens).filter((id) => id !== 'i7')], 'the tokens of the whole batch in one read')
})

t.test('jobs settled in the same turn leave the outbox in one write', async (t) => {
  const tokens: Record<string, DeviceToken> = {}
  for (let i = 0; i < 100; i++) tokens[`i${i}`] = apnsToken(`t${i}`)
  const { relay, store, counts } = setup(t, { tokens })
  await relay.routed(Object.keys(tokens), content)
  await settled(relay)
  t.equal(counts.sent, 100)
  t.equal(store.jobs.size, 0)
  t.same(store.deleteWrites, [100], 'one deleteMany for the 100 answers the sender gave together')
})

t.test('a slow delivery holds only its own slot: the others refill at once', async (t) => {
  // a deadlock here (the old behaviour: a batch's slots were freed only when all of it was done) fails by timeout
  t.setTimeout(10_000)
  const sent: string[] = []
  let release: (() => void) | undefined
  const slow = new Promise<void>((resolve) => { release = resolve })
  let third: (() => void) | undefined
  const thirdSent = new Promise<void>((resolve) => { third = resolve })
  const sender: PushSender = {
    provider: 'apns',
    maxBatch: 1,
    async send (deliveries) {
      const [delivery] = deliveries
      if (delivery === undefined) return []
      sent.push(delivery.token.token)
      if (delivery.token.token === 'slow') await slow
      if (delivery.token.token === 'third') third?.()
      return [{ jobId: delivery.jobId, outcome: 'sent' }]
    },
    async close () {},
  }
  const { relay, counts } = setup(t, { tokens: { s: apnsToken('slow'), f: apnsToken('fast'), x: apnsToken('third') }, concurrency: 2, apnsSender: sender })
  await relay.routed(['s', 'f'], content)
  await relay.routed(['x'], content)
  await thirdSent
  t.same(sent, ['slow', 'fast', 'third'], 'the third job went out while the slow one was still in flight')
  release?.()
  await settled(relay)
  t.equal(counts.sent, 3)
})

t.test('jobs left in the outbox are sent after a restart', async (t) => {
  const first = setup(t, { tokens: { a: fcmToken('a') } })
  const job: RelayJob = { id: 'j1', installationId: 'a', content, createdAt: Date.now(), expiresAt: Date.now() + 60_000, attempts: 1, notBefore: 0 }
  await first.store.put(job)
  await first.relay.start()
  await settled(first.relay)
  t.equal(first.fcm.batches.flat()[0]?.jobId, 'j1')
})

t.test('a settle the store refuses is tried again: the job is sent once and the outbox empties', async (t) => {
  // before the fix the job stayed in the worker for good: drain() hung, and this failed by timeout
  t.setTimeout(10_000)
  let refusals = 2
  const { relay, apns, store, warnings } = setup(t, {
    tokens: { a: apnsToken('a') },
    wrapStore: (inner) => {
      const settle = inner.settle.bind(inner)
      inner.settle = async (ids) => {
        if (refusals-- > 0) throw Object.assign(new Error('Connection is closed.'), { code: 'ECONNRESET' })
        await settle(ids)
      }
      return inner
    },
  })
  await relay.routed(['a'], content)
  await settled(relay)
  t.equal(apns.batches.length, 1, 'sent once')
  t.equal(store.jobs.size, 0)
  t.equal(relay.depth, 0)
  t.same(warnings.map((w) => w.message), ['relay outbox: settled jobs not removed yet; trying again'], 'one warning for the streak')
})

t.test('a job another node took over is neither retried nor settled here', async (t) => {
  let lose: ((ids: readonly string[]) => void) | undefined
  let updated: ((job: RelayJob) => void) | undefined
  const retryStored = new Promise<RelayJob>((resolve) => { updated = resolve })
  const { relay, apns, store, counts } = setup(t, {
    tokens: { a: apnsToken('a') },
    wrapStore: (inner) => {
      const update = inner.update.bind(inner)
      inner.update = async (job) => { await update(job); updated?.(job) }
      inner.onLost = (listener) => { lose = listener }
      return inner
    },
  })
  apns.answer = (delivery) => ({ jobId: delivery.jobId, outcome: 'retry', reason: 'scripted', retryAfterMs: 200 })
  await relay.routed(['a'], content)
  const job = await retryStored
  t.equal(relay.depth, 1, 'waiting for its retry')
  lose?.([job.id])
  t.equal(relay.depth, 0, 'forgotten at once')
  // the node that took it over settles it
  await store.deleteMany([job.id])
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(apns.batches.length, 1, 'not tried again after its Retry-After')
  t.equal(counts.retried, 1)
})

t.test('retry delays grow exponentially with jitter, capped, and honour Retry-After', async (t) => {
  const policy = { baseMs: 1000, maxMs: 30_000 }
  t.equal(retryDelayMs(1, policy, undefined, () => 0), 500)
  t.equal(retryDelayMs(1, policy, undefined, () => 1), 1000)
  t.equal(retryDelayMs(4, policy, undefined, () => 1), 8000)
  t.equal(retryDelayMs(20, policy, undefined, () => 1), 30_000, 'capped')
  t.equal(retryDelayMs(1, policy, 7000, () => 0), 7000, 'Retry-After is a floor')
})
