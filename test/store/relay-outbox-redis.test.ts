/**
 * The relay outbox shared by several nodes on one Redis (issue 16): each job
 * sent by exactly one node, the jobs of a dead node taken over by the others
 * after claimIdleMs with their retry state, duplicates bounded by what the dead
 * node had in flight. Each node is a real RedisRelayStore on a connection of
 * its own, under the real relay worker, with a sender that counts deliveries.
 */
import { EventEmitter, once } from 'node:events'
import type { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { createPushRelay, type Delivery, type DeliveryResult, type PushRelay, type PushSender, type RelayContent, type RelayJob, type RelayStore } from '../../plugins/push-core/index.js'
import { openRedisConnection, type RedisConnection } from '../../src/store/redis/connection.js'
import { openRedisRelayStore } from '../../src/store/redis/relay-outbox.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'

let redis: TestRedis
t.before(async () => { redis = await startRedis(t) })

let prefixes = 0
const content: RelayContent = { kind: 'push', messageId: 'm1', topic: 'users/alice/inbox', notification: { title: 'hi' }, data: {} }

/** Every delivery and dead letter of every node is told here, so tests wait on events across nodes. */
const bus = new EventEmitter()

/** Resolves once `predicate` holds, checked after each delivery or dead letter anywhere. */
async function until (predicate: () => boolean): Promise<void> {
  while (!predicate()) await once(bus, 'change')
}

/** What a scripted sender does with one delivery: answer it, or keep it in flight until released. */
type Answer = 'sent' | 'hang' | { readonly outcome: 'retry', readonly retryAfterMs?: number }

/** A fake provider behind one node: it records every delivery (a delivery is a send the provider saw). */
class CountingSender implements PushSender {
  readonly provider = 'fcm'
  readonly maxBatch = 50
  readonly deliveries: Array<{ jobId: string, at: number }> = []
  answer: (delivery: Delivery, attempt: number) => Answer = () => 'sent'
  readonly #attempts = new Map<string, number>()
  readonly #hanging: Array<() => void> = []

  constructor (readonly node: string) {}

  get inFlight (): number { return this.#hanging.length }

  async send (deliveries: readonly Delivery[]): Promise<DeliveryResult[]> {
    const results = await Promise.all(deliveries.map(async (delivery): Promise<DeliveryResult> => {
      const attempt = (this.#attempts.get(delivery.jobId) ?? 0) + 1
      this.#attempts.set(delivery.jobId, attempt)
      this.deliveries.push({ jobId: delivery.jobId, at: Date.now() })
      const answer = this.answer(delivery, attempt)
      if (answer === 'hang') {
        await new Promise<void>((resolve) => { this.#hanging.push(resolve); bus.emit('change') })
        return { jobId: delivery.jobId, outcome: 'sent' }
      }
      bus.emit('change')
      if (answer === 'sent') return { jobId: delivery.jobId, outcome: 'sent' }
      return { jobId: delivery.jobId, outcome: 'retry', reason: 'scripted', ...(answer.retryAfterMs !== undefined && { retryAfterMs: answer.retryAfterMs }) }
    }))
    // a provider answers in its own time: the worker sees answers in several turns
    await new Promise((resolve) => setImmediate(resolve))
    return results
  }

  release (): void {
    for (const resolve of this.#hanging.splice(0)) resolve()
  }

  async close (): Promise<void> {}
}

interface Node {
  readonly name: string
  readonly relay: PushRelay
  readonly store: RelayStore
  readonly sender: CountingSender
  readonly dead: Array<{ id: string, attempts: number }>
  /**
   * What kill -9 leaves: its connections cut (no command reaches Redis again,
   * nothing is settled or handed back) and its worker stopped (no retry timer
   * fires); deliveries in flight stay unanswered.
   */
  kill (): void
}

interface NodeOptions {
  readonly claimIdleMs: number
  readonly concurrency?: number
  readonly maxAttempts?: number
  /** wraps the node's store, to observe its writes */
  readonly wrap?: (store: RelayStore) => RelayStore
}

async function startNode (t: Test, keyPrefix: string, name: string, options: NodeOptions): Promise<Node> {
  const conn = await openRedisConnection({ url: redis.url, keyPrefix })
  const readers: Redis[] = []
  // the store's blocking reads get a connection of their own (conn.subscriber()): the test keeps them to cut them
  const tracked: RedisConnection = {
    ...conn,
    subscriber () {
      const reader = conn.subscriber()
      readers.push(reader)
      return reader
    },
  }
  const opened = await openRedisRelayStore(tracked, { consumer: name, claimIdleMs: options.claimIdleMs, blockMs: 200 })
  const store = options.wrap?.(opened) ?? opened
  const sender = new CountingSender(name)
  const dead: Array<{ id: string, attempts: number }> = []
  const relay = createPushRelay({
    logger: { info () {}, warn () {} },
    store,
    senders: [sender],
    tokens: {
      tokensOf: async (ids) => ids.map((id) => ({ provider: 'fcm', token: `token-${id}`, environment: null, apnsTopic: null })),
      prune: async () => {},
    },
    recipients: {
      hasPushToken: () => true,
      isPushOnly: () => false,
      isConnected: () => false,
      mayReceive: async (ids) => ids.map(() => true),
    },
    settings: { defaultTtlSec: 3600, maxAttempts: options.maxAttempts ?? 10, concurrency: options.concurrency ?? 10, retryBaseMs: 1, retryMaxMs: 4 },
  })
  const originalDeadLetter = store.deadLetter.bind(store)
  store.deadLetter = async (job, reason) => {
    await originalDeadLetter(job, reason)
    dead.push({ id: job.id, attempts: job.attempts })
    bus.emit('change')
  }
  await relay.start()
  t.teardown(async () => {
    sender.release()
    await relay.close()
    await conn.close()
  })
  return {
    name,
    relay,
    store,
    sender,
    dead,
    kill () {
      conn.client.disconnect()
      for (const reader of readers) reader.disconnect()
      // clears its timers at once; resolves only at teardown, when the hanging deliveries are released
      void relay.close()
    },
  }
}

/** The installations of `n` relay jobs. */
const installations = (n: number, tag = 'i'): string[] => Array.from({ length: n }, (_, i) => `${tag}${i}`)

function jobIdsOf (nodes: readonly Node[]): string[] {
  return nodes.flatMap((node) => node.sender.deliveries.map((d) => d.jobId))
}

async function outboxLeft (keyPrefix: string): Promise<{ stream: number, state: number }> {
  const client = redis.client()
  return { stream: await client.xlen(`${keyPrefix}relay:jobs`), state: await client.hlen(`${keyPrefix}relay:state`) }
}

t.test('N jobs routed on three nodes: exactly N sends, spread over the nodes', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const nodes = await Promise.all(['a', 'b', 'c'].map(async (name) => await startNode(t, keyPrefix, name, { claimIdleMs: 5000, concurrency: 8 })))
  const N = 600
  // routed on every node, in several messages, as a cluster's HTTP and MQTT traffic would
  let routed = 0
  for (let i = 0; i < 12; i++) {
    const node = nodes[i % 3] as Node
    routed += await node.relay.routed(installations(50, `m${i}-`), content)
  }
  t.equal(routed, N)
  await nodes[0]?.relay.drain()
  const sent = jobIdsOf(nodes)
  t.equal(sent.length, N, 'N deliveries at the providers')
  t.equal(new Set(sent).size, N, 'each job once')
  const perNode = nodes.map((node) => node.sender.deliveries.length)
  t.ok(perNode.every((count) => count > 0), `every node sent some (${perNode.join(' / ')})`)
  t.same(await outboxLeft(keyPrefix), { stream: 0, state: 0 }, 'nothing left in Redis')
  t.comment(`deliveries per node: ${perNode.join(' / ')}`)
})

t.test('a killed node\'s jobs are sent by the others after claimIdleMs: none lost, duplicates only what it had in flight', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const claimIdleMs = 400
  const victim = await startNode(t, keyPrefix, 'victim', { claimIdleMs, concurrency: 6 })
  // the victim's provider never answers: what it sends stays in flight until the kill
  victim.sender.answer = () => 'hang'
  const survivors = await Promise.all(['s1', 's2'].map(async (name) => await startNode(t, keyPrefix, name, { claimIdleMs, concurrency: 6 })))
  const N = 200
  await victim.relay.routed(installations(N), content)
  await until(() => victim.sender.inFlight === 6)
  const inFlight = victim.sender.inFlight
  const victimJobs = new Set(victim.sender.deliveries.map((d) => d.jobId))
  const killedAt = Date.now()
  victim.kill()

  const all = [victim, ...survivors]
  await until(() => new Set(jobIdsOf(all)).size === N && [...victimJobs].every((id) => jobIdsOf(survivors).includes(id)))
  await survivors[0]?.relay.drain()
  const delivered = jobIdsOf(all)
  const distinct = new Set(delivered)
  t.equal(distinct.size, N, 'every job reached a provider: none lost')
  const duplicates = delivered.length - N
  t.ok(duplicates <= inFlight, `duplicates (${duplicates}) ≤ what the victim had in flight (${inFlight})`)
  const bySurvivors = jobIdsOf(survivors)
  t.equal(new Set(bySurvivors).size, bySurvivors.length, 'the survivors sent no job twice')
  const retaken = survivors.flatMap((node) => node.sender.deliveries.filter((d) => victimJobs.has(d.jobId)))
  t.equal(retaken.length, inFlight, 'the victim\'s in-flight jobs were sent again, once each')
  // the victim last refreshed its jobs at most claimIdleMs / 3 before it died
  t.ok(retaken.every((d) => d.at - killedAt >= claimIdleMs * 2 / 3 - 20), 'not before they were idle for claimIdleMs')
  t.same(await outboxLeft(keyPrefix), { stream: 0, state: 0 }, 'nothing left in Redis')
  t.comment(`victim in flight ${inFlight}, duplicates ${duplicates}, taken over after ${Math.min(...retaken.map((d) => d.at - killedAt))} ms (claimIdleMs ${claimIdleMs})`)
})

t.test('a live node keeps a job it holds longer than claimIdleMs: a slow send is not sent twice', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const claimIdleMs = 200
  const holder = await startNode(t, keyPrefix, 'holder', { claimIdleMs })
  holder.sender.answer = () => 'hang'
  await holder.relay.routed(['slow'], content)
  await until(() => holder.sender.inFlight === 1)
  const other = await startNode(t, keyPrefix, 'other', { claimIdleMs })
  // five times claimIdleMs: the other node scans for abandoned jobs about twenty times meanwhile
  await new Promise((resolve) => setTimeout(resolve, 5 * claimIdleMs))
  holder.sender.release()
  await holder.relay.drain()
  t.equal(holder.sender.deliveries.length, 1)
  t.equal(other.sender.deliveries.length, 0, 'the other node never took it')
  t.same(await outboxLeft(keyPrefix), { stream: 0, state: 0 })
})

t.test('a job taken over keeps its attempts and its next-attempt time', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const claimIdleMs = 300
  let stored: ((job: RelayJob) => void) | undefined
  const storedTwice = new Promise<RelayJob>((resolve) => { stored = resolve })
  const first = await startNode(t, keyPrefix, 'first', {
    claimIdleMs,
    maxAttempts: 4,
    // resolves once the second failure's state is in Redis
    wrap: (store) => {
      const update = store.update.bind(store)
      store.update = async (job) => {
        await update(job)
        if (job.attempts === 2) stored?.(job)
      }
      return store
    },
  })
  // two failures on the first node, the second with a provider's Retry-After
  first.sender.answer = (_d, attempt) => attempt === 1 ? { outcome: 'retry' } : { outcome: 'retry', retryAfterMs: 1200 }
  await first.relay.routed(['x'], content)
  const waiting = await storedTwice
  first.kill()

  const second = await startNode(t, keyPrefix, 'second', { claimIdleMs, maxAttempts: 4 })
  second.sender.answer = () => ({ outcome: 'retry' })
  await until(() => second.dead.length === 1)
  t.equal(first.sender.deliveries.length, 2, 'two attempts on the first node')
  t.equal(second.sender.deliveries.length, 2, 'two more on the second, not maxAttempts more')
  t.same(second.dead, [{ id: waiting.id, attempts: 4 }], 'dead-lettered after 4 attempts in all')
  t.ok((second.sender.deliveries[0]?.at ?? 0) >= waiting.notBefore, 'not tried before the Retry-After the first node got')
  const letters = []
  for await (const letter of second.store.deadLetters()) letters.push(letter)
  t.match(letters, [{ id: waiting.id, attempts: 4, reason: 'scripted' }])
  t.same(await outboxLeft(keyPrefix), { stream: 0, state: 0 })
})

t.test('a node closed gracefully hands its jobs over at once; a restart under the same id takes back its own', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const claimIdleMs = 3000
  const open = async (consumer: string): Promise<{ store: RelayStore, conn: RedisConnection }> => {
    const conn = await openRedisConnection({ url: redis.url, keyPrefix })
    // claimIdleMs longer than the steps below take: only a hand-over or an own restart moves these jobs in time
    const store = await openRedisRelayStore(conn, { consumer, claimIdleMs, blockMs: 100 })
    t.teardown(async () => { await store.close(); await conn.close() })
    return { store, conn }
  }
  const job = (id: string): RelayJob => ({ id, installationId: id, content, createdAt: 1, expiresAt: 9e12, attempts: 0, notBefore: 1 })
  const take = async (store: RelayStore, ms: number): Promise<string[]> => {
    const signal = AbortSignal.timeout(ms)
    const ids: string[] = []
    while (!signal.aborted) ids.push(...(await store.take(10, signal)).map((j) => j.id))
    return ids.sort()
  }

  const a = await open('a')
  await a.store.enqueue([job('1'), job('2'), job('3')])
  t.same(await take(a.store, 300), ['1', '2', '3'])
  // a crash: nothing released, the connection cut
  a.conn.client.disconnect()
  const b = await open('b')
  t.same(await take(b.store, 300), [], 'another node does not take them before claimIdleMs')
  const again = await open('a')
  t.same(await take(again.store, 300), ['1', '2', '3'], 'the same node id takes its own back at start')
  await again.store.close()
  const closedAt = Date.now()
  const signal = AbortSignal.timeout(claimIdleMs)
  const handed: string[] = []
  while (handed.length < 3 && !signal.aborted) handed.push(...(await b.store.take(10, signal)).map((j) => j.id))
  t.same(handed.sort(), ['1', '2', '3'], 'closed: handed over to the others')
  t.ok(Date.now() - closedAt < claimIdleMs, `within ${Date.now() - closedAt} ms, not after claimIdleMs (${claimIdleMs} ms)`)
})

t.test('a node that stalled past claimIdleMs loses its jobs to another and is told so', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const open = async (consumer: string, claimIdleMs: number): Promise<RelayStore> => {
    const conn = await openRedisConnection({ url: redis.url, keyPrefix })
    const store = await openRedisRelayStore(conn, { consumer, claimIdleMs, blockMs: 50 })
    t.teardown(async () => { await store.close(); await conn.close() })
    return store
  }
  // the slow node refreshes its jobs every 300 ms; the other takes over what is idle for 100 ms: a stall, seen from outside
  const slow = await open('slow', 900)
  const lost = new Promise<readonly string[]>((resolve) => slow.onLost(resolve))
  await slow.enqueue([{ id: 'j', installationId: 'i', content, createdAt: 1, expiresAt: 9e12, attempts: 0, notBefore: 1 }])
  t.same((await slow.take(10, AbortSignal.timeout(2000))).map((j) => j.id), ['j'])
  const other = await open('other', 100)
  const signal = AbortSignal.timeout(3000)
  const taken: string[] = []
  while (taken.length === 0 && !signal.aborted) taken.push(...(await other.take(10, signal)).map((j) => j.id))
  t.same(taken, ['j'], 'taken over')
  t.same(await lost, ['j'], 'the stalled node learns it lost the job (and does not refresh it back)')
  await slow.settle(['j'])
  t.equal(await other.count(), 1, 'a late settle by the node that lost it leaves the new owner\'s job alone')
  await other.settle(['j'])
  t.equal(await other.count(), 0)
})

t.test('consumers of nodes long gone that hold nothing leave the group', async (t) => {
  const keyPrefix = `relay-x${++prefixes}:`
  const client = redis.client()
  const conn = await openRedisConnection({ url: redis.url, keyPrefix })
  const claimIdleMs = 40
  const store = await openRedisRelayStore(conn, { consumer: 'live', claimIdleMs, blockMs: 20 })
  t.teardown(async () => { await store.close(); await conn.close() })
  const stream = `${keyPrefix}relay:jobs`
  await client.xgroup('CREATECONSUMER', stream, 'relay', 'ghost')
  const consumers = async (): Promise<string[]> => ((await client.xinfo('CONSUMERS', stream, 'relay')) as unknown[][]).map((c) => String(c[1])).sort()
  t.same(await consumers(), ['ghost'])
  const signal = AbortSignal.timeout(5000)
  // the store's takes run its scans; ghost is forgotten once idle for 10 × claimIdleMs
  while (!signal.aborted && (await consumers()).includes('ghost')) await store.take(10, signal)
  t.notOk((await consumers()).includes('ghost'), 'the idle consumer holding nothing is gone')
  t.ok((await consumers()).includes('live'))
})

t.test('Redis restarted empty: the node recreates the group and sends what is routed afterwards', async (t) => {
  // a redis-server of its own: this test stops it
  const own = await startRedis(t)
  const conn = await openRedisConnection({ url: own.url, keyPrefix: 'restart:' })
  const store = await openRedisRelayStore(conn, { consumer: 'n', claimIdleMs: 1000, blockMs: 100 })
  const sender = new CountingSender('n')
  const relay = createPushRelay({
    logger: { info () {}, warn () {} },
    store,
    senders: [sender],
    tokens: { tokensOf: async (ids) => ids.map((id) => ({ provider: 'fcm', token: id, environment: null, apnsTopic: null })), prune: async () => {} },
    recipients: { hasPushToken: () => true, isPushOnly: () => false, isConnected: () => false, mayReceive: async (ids) => ids.map(() => true) },
    settings: { defaultTtlSec: 3600, maxAttempts: 10, concurrency: 10, retryBaseMs: 1, retryMaxMs: 4 },
  })
  t.teardown(async () => { await relay.close(); await conn.close() })
  await relay.start()
  await relay.routed(['before'], content)
  await until(() => sender.deliveries.length === 1)
  await own.stop({ kill: true })
  await own.restart()
  // routing fails until the connection is back
  const signal = AbortSignal.timeout(10_000)
  for (;;) {
    try {
      await relay.routed(['after'], content)
      break
    } catch (err) {
      if (signal.aborted) throw err
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await relay.drain()
  t.equal(sender.deliveries.length, 2, 'both sent, once each')
  t.equal(await store.count(), 0, 'settled in the new stream')
})
