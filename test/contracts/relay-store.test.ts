import t, { type Test } from 'tap'
import type { RelayJob, RelayStore } from '../../plugins/push-core/index.js'
import { openDatabase } from '../../src/store/open-store.js'
import { openRedisConnection } from '../../src/store/redis/connection.js'
import { openRedisRelayStore } from '../../src/store/redis/relay-outbox.js'
import { createRelayOutbox } from '../../src/store/relay-outbox.js'
import { makeTempDir } from '../helpers/broker.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'

// The relay outbox's contract (plugins/push-core/job.ts RelayStore), run
// against both implementations: LevelDB (a temp dir; one process owns every
// job) and Redis Streams (its own redis-server, one key prefix per test).
// Jobs shared by several nodes: test/store/relay-outbox-redis.test.ts.

interface Backend {
  readonly name: string
  /** A fresh, empty outbox; `open` opens a store on it (again: what a restart finds). */
  space (t: Test): Promise<{ open: () => Promise<RelayStore> }>
}

const level: Backend = {
  name: 'LevelDB',
  async space (t) {
    const db = await openDatabase(await makeTempDir(t))
    t.teardown(async () => await db.close())
    return { open: async () => createRelayOutbox(db) }
  },
}

let prefixes = 0
function redisBackend (redis: () => TestRedis): Backend {
  return {
    name: 'Redis',
    async space (t) {
      const keyPrefix = `relay-contract${++prefixes}:`
      let restarts = 0
      return {
        async open () {
          const conn = await openRedisConnection({ url: redis().url, keyPrefix })
          // a restarted process is a new node (the default node id has the pid in it)
          const store = await openRedisRelayStore(conn, { consumer: `node-${++restarts}`, claimIdleMs: 60_000, blockMs: 100 })
          t.teardown(async () => {
            await store.close()
            await conn.close()
          })
          return store
        },
      }
    },
  }
}

let testRedis: TestRedis | undefined
t.before(async () => { testRedis = await startRedis(t) })
const backends = [level, redisBackend(() => {
  if (testRedis === undefined) throw new Error('redis-server not started')
  return testRedis
})]

for (const backend of backends) t.test(backend.name, async (t) => { contract(t, backend) })

const job = (id: string, extra: Partial<RelayJob> = {}): RelayJob => ({
  id,
  installationId: `inst-${id}`,
  content: { kind: 'push', messageId: `m-${id}`, topic: 'users/alice/inbox', notification: { title: 'hi' }, data: { k: 'v' }, apns: { badge: 2 } },
  createdAt: 1000,
  expiresAt: 9_000_000_000_000,
  attempts: 0,
  notBefore: 1000,
  ...extra,
})

const ids = (jobs: readonly RelayJob[]): string[] => jobs.map((j) => j.id)

/** Takes until `n` jobs came (a store may hand them out over several takes). */
async function takeN (store: RelayStore, n: number): Promise<RelayJob[]> {
  const taken: RelayJob[] = []
  const signal = AbortSignal.timeout(5000)
  while (taken.length < n && !signal.aborted) taken.push(...await store.take(n - taken.length, signal))
  return taken
}

/** What a take finds within `ms`: nothing, when the store holds nothing for this node. */
async function takeWithin (store: RelayStore, ms: number): Promise<RelayJob[]> {
  const signal = AbortSignal.timeout(ms)
  const taken: RelayJob[] = []
  while (!signal.aborted) taken.push(...await store.take(100, signal))
  return taken
}

function contract (t: Test, backend: Backend): void {
  t.test('enqueued jobs are taken whole, at most max at a time, each once', async (t) => {
    const { open } = await backend.space(t)
    const store = await open()
    const jobs = ['a', 'b', 'c', 'd', 'e'].map((id) => job(id))
    await store.enqueue(jobs)
    t.equal(await store.count(), 5)
    const first = await store.take(2, AbortSignal.timeout(5000))
    t.equal(first.length, 2, 'no more than asked for')
    const rest = await takeN(store, 3)
    t.same([...ids(first), ...ids(rest)].sort(), ['a', 'b', 'c', 'd', 'e'])
    t.strictSame(first.find((j) => j.id === 'a') ?? rest.find((j) => j.id === 'a'), jobs[0], 'the job as enqueued, content included')
    t.same(await takeWithin(store, 150), [], 'nothing is handed out twice')
    t.equal(await store.count(), 5, 'taken is not settled')
    await store.enqueue([])
    await store.settle([])
    t.equal(await store.count(), 5)
  })

  t.test('a waiting take gets the jobs enqueued meanwhile; an aborted one resolves empty', async (t) => {
    const { open } = await backend.space(t)
    const store = await open()
    const controller = new AbortController()
    const waiting = store.take(10, controller.signal)
    const aborted = new AbortController()
    await store.enqueue([job('late')])
    const got: RelayJob[] = [...await waiting]
    while (got.length === 0) got.push(...await store.take(10, controller.signal))
    t.same(ids(got), ['late'])
    const cut = store.take(10, aborted.signal)
    aborted.abort()
    t.same(await cut, [], 'abort ends the wait')
  })

  t.test('settled jobs are gone; a restart hands out the others with their retry state', async (t) => {
    const { open } = await backend.space(t)
    const store = await open()
    await store.enqueue(['a', 'b', 'c', 'd'].map((id) => job(id)))
    const taken = await takeN(store, 4)
    t.equal(taken.length, 4)
    await store.settle(['a', 'c', 'not-there'])
    t.equal(await store.count(), 2)
    await store.update(job('b', { attempts: 3, notBefore: 123_456 }))
    await store.close()

    const restarted = await open()
    const again = await takeN(restarted, 2)
    t.same(ids(again).sort(), ['b', 'd'], 'what was not settled is handed out again')
    t.match(again.find((j) => j.id === 'b'), { attempts: 3, notBefore: 123_456, content: { messageId: 'm-b' } }, 'the retry state came along')
    t.match(again.find((j) => j.id === 'd'), { attempts: 0, notBefore: 1000 })
    t.same(await takeWithin(restarted, 150), [], 'settled jobs are not')
    await restarted.settle(['b', 'd'])
    t.equal(await restarted.count(), 0)
  })

  t.test('dead letters leave the outbox and are listed with their reason, also after a restart', async (t) => {
    const { open } = await backend.space(t)
    const store = await open()
    await store.enqueue([job('x'), job('y')])
    const [x] = (await takeN(store, 2)).filter((j) => j.id === 'x')
    if (x === undefined) throw new Error('x not taken')
    const before = Date.now()
    await store.deadLetter({ ...x, attempts: 10 }, 'apns: ServiceUnavailable')
    t.equal(await store.count(), 1)
    await store.close()
    const restarted = await open()
    const dead = []
    for await (const letter of restarted.deadLetters()) dead.push(letter)
    t.equal(dead.length, 1)
    t.match(dead[0], { id: 'x', attempts: 10, reason: 'apns: ServiceUnavailable', content: { messageId: 'm-x' } })
    t.ok((dead[0]?.deadAt ?? 0) >= before)
    t.same(ids(await takeN(restarted, 1)), ['y'], 'the dead letter is not handed out again')
  })

  t.test('dead letters are paged in id order, read by id, replayed once into the outbox, and purged', async (t) => {
    const { open } = await backend.space(t)
    const store = await open()
    const names = ['d1', 'd2', 'd3', 'd4', 'd5']
    await store.enqueue(names.map((id) => job(id, { attempts: 2 })))
    for (const taken of await takeN(store, names.length)) await store.deadLetter({ ...taken, attempts: 10 }, `reason of ${taken.id}`)
    t.equal(await store.count(), 0)
    t.equal(await store.deadLetterCount(), 5)

    const first = await store.listDeadLetters({ limit: 2 })
    t.same(ids(first.letters), ['d1', 'd2'])
    t.equal(first.next, 'd2')
    const second = await store.listDeadLetters({ after: first.next ?? undefined, limit: 2 })
    t.same(ids(second.letters), ['d3', 'd4'])
    const last = await store.listDeadLetters({ after: second.next ?? undefined, limit: 2 })
    t.same(ids(last.letters), ['d5'])
    t.equal(last.next, null, 'no page after the last')
    t.same(await store.listDeadLetters({ after: 'd5', limit: 2 }), { letters: [], next: null })

    t.match(await store.getDeadLetter('d3'), { id: 'd3', attempts: 10, reason: 'reason of d3', content: { messageId: 'm-d3' } })
    t.equal(await store.getDeadLetter('nope'), undefined)

    // two replays of one dead letter at once: one job
    const revive = (letter: { id: string, installationId: string, content: RelayJob['content'] }): RelayJob =>
      job(letter.id, { installationId: letter.installationId, content: letter.content, notBefore: 5000 })
    const replays = await Promise.all([store.replayDeadLetter('d2', revive), store.replayDeadLetter('d2', revive)])
    t.equal(replays.filter((r) => r !== undefined).length, 1, 'replayed once')
    t.equal(await store.replayDeadLetter('nope', revive), undefined)
    t.equal(await store.getDeadLetter('d2'), undefined, 'no longer a dead letter')
    t.equal(await store.deadLetterCount(), 4)
    t.equal(await store.count(), 1, 'back in the outbox')
    const [again] = await takeN(store, 1)
    t.match(again, { id: 'd2', attempts: 0, notBefore: 5000, content: { messageId: 'm-d2' } }, 'handed out as the revived job')

    t.equal(await store.deleteDeadLetters(['d1', 'nope']), 1, 'one of two existed')
    t.equal(await store.deadLetterCount(), 3)
    t.equal(await store.deleteDeadLetters(), 3, 'all the others')
    t.equal(await store.deadLetterCount(), 0)
    t.same(await store.listDeadLetters({ limit: 10 }), { letters: [], next: null })
    await store.close()
    const restarted = await open()
    t.equal(await restarted.deadLetterCount(), 0, 'purged for good')
    t.same(ids(await takeN(restarted, 1)), ['d2'], 'the replayed job is stored: a restart hands it out')
  })
}
