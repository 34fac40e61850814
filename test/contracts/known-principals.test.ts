/** PrincipalDirectory: one contract, run on LevelDB and on Redis; then what only a cluster has (several nodes on one Redis). */
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { Grants, Principal, TokenVerifier } from '../../src/auth/index.js'
import { openPrincipalDirectory, type PrincipalDirectory } from '../../src/store/known-principals.js'
import { openRedisPrincipalDirectory, type RedisPrincipalDirectory } from '../../src/store/redis/known-principals.js'
import { startRedis } from '../helpers/redis.js'
import { freshPrefix, nodeConnection, tempDatabase } from '../helpers/store-backends.js'

const redis = await startRedis(t)
const logger = pino({ level: 'silent' })

interface Backend {
  open (t: Test): Promise<{ directory: PrincipalDirectory, reopen: () => Promise<PrincipalDirectory> }>
}

const backends: Record<string, Backend> = {
  leveldb: {
    async open (t) {
      const database = await tempDatabase(t)
      return {
        directory: await openPrincipalDirectory(database.db(), logger),
        reopen: async () => await openPrincipalDirectory(await database.reopen(), logger),
      }
    },
  },
  redis: {
    async open (t) {
      const prefix = freshPrefix()
      const node = async (): Promise<RedisPrincipalDirectory> => await openRedisPrincipalDirectory(await nodeConnection(t, redis, prefix), logger)
      return { directory: await node(), reopen: node }
    },
  },
}

const noGrants: Grants = { pub: [], sub: [] }
const alice = (groups: string[], issuedAt?: number, grants = noGrants): Principal =>
  ({ kind: 'user', sub: 'alice', groups, role: 'device', grants, expiresAt: null, ...(issuedAt !== undefined && { issuedAt }) })

for (const [name, backend] of Object.entries(backends)) {
  t.test(`${name}: the token issued last wins, whatever order tokens are seen in`, async (t) => {
    const { directory } = await backend.open(t)
    t.strictSame(await directory.latest(['alice']), [undefined], 'never seen')
    t.strictSame(await directory.latest([]), [])
    directory.seen(alice(['ops'], 1_000))
    t.match(await directory.latest(['alice']), [{ sub: 'alice', groups: ['ops'], issuedAt: 1_000 }], 'latest waits for the update')
    directory.seen(alice([], 2_000))
    t.match(await directory.latest(['alice']), [{ groups: [] }], 'a newer token without ops replaces it')
    directory.seen(alice(['ops'], 1_500))
    t.match(await directory.latest(['alice']), [{ groups: [] }], 'an older token seen later does not')
    directory.seen(alice(['ops'], 3_000, { pub: [], sub: ['!users/%u/x'] }))
    t.match(await directory.latest(['alice', 'bob']), [{ groups: ['ops'], grants: { sub: ['!users/%u/x'] } }, undefined], 'grants come along; in order')
    directory.seen(alice(['admins']))
    t.match(await directory.latest(['alice']), [{ groups: ['admins'] }], 'a token without iat counts as issued when seen')
    directory.seen({ kind: 'anonymous', sub: null, groups: [], role: 'device', grants: noGrants, expiresAt: null })
    await directory.idle()
  })

  t.test(`${name}: kept when opened again; the stored issue time still orders tokens`, async (t) => {
    const { directory, reopen } = await backend.open(t)
    directory.seen(alice([], 2_000))
    await directory.idle()
    const again = await reopen()
    t.match(await again.latest(['alice']), [{ groups: [], issuedAt: 2_000 }])
    again.seen(alice(['ops'], 1_000))
    t.match(await again.latest(['alice']), [{ groups: [] }])
  })

  t.test(`${name}: watch records what the verifier accepts, and nothing it refuses`, async (t) => {
    const { directory } = await backend.open(t)
    const verifier: TokenVerifier = {
      verify (token) {
        if (token === 'bad') throw new Error('refused')
        return alice([token], 1_000)
      },
    }
    const watched = directory.watch(verifier)
    t.throws(() => watched.verify('bad'))
    t.strictSame(await directory.latest(['alice']), [undefined])
    t.match(watched.verify('ops'), { groups: ['ops'] }, 'the principal is returned as verified')
    t.match(await directory.latest(['alice']), [{ groups: ['ops'] }])
  })
}

t.test('redis, two nodes: a newer token seen on one is what the other knows; an older one seen there cannot undo it', async (t) => {
  const prefix = freshPrefix()
  const a = await openRedisPrincipalDirectory(await nodeConnection(t, redis, prefix), logger)
  const b = await openRedisPrincipalDirectory(await nodeConnection(t, redis, prefix), logger)
  a.seen(alice(['ops'], 1_000))
  b.seen(alice(['ops'], 1_000))
  await Promise.all([a.idle(), b.idle()])
  a.seen(alice([], 2_000))
  await a.idle()
  t.match(await b.latest(['alice']), [{ groups: [] }], 'b reads what a wrote')
  // b still caches ops@1000 unless a's change message has come: either way ops@1500 is older than what Redis holds
  b.seen(alice(['ops'], 1_500))
  await b.idle()
  t.match(await a.latest(['alice']), [{ groups: [], issuedAt: 2_000 }])
  t.match(await b.latest(['alice']), [{ groups: [], issuedAt: 2_000 }])
})

t.test('redis: a node whose cache is behind cannot overwrite a newer record (compare-and-set in Redis)', async (t) => {
  const prefix = freshPrefix()
  const b = await openRedisPrincipalDirectory(await nodeConnection(t, redis, prefix), logger)
  b.seen(alice(['ops'], 1_000))
  await b.idle()
  // another node's write whose change message b has not had yet
  await redis.client().hset(`${prefix}known-principals`, 'alice', `2000 ${JSON.stringify({ groups: [], role: 'device', grants: noGrants })}`)
  b.seen(alice(['ops'], 1_500))
  await b.idle()
  t.match(await b.latest(['alice']), [{ groups: [], issuedAt: 2_000 }], 'the older token lost in Redis')
  t.match(await redis.client().hget(`${prefix}known-principals`, 'alice'), /^2000 /)
})

t.test('redis, two nodes: tokens of every age seen on both at once, the one issued last is kept', async (t) => {
  const prefix = freshPrefix()
  const nodes = [
    await openRedisPrincipalDirectory(await nodeConnection(t, redis, prefix), logger),
    await openRedisPrincipalDirectory(await nodeConnection(t, redis, prefix), logger),
  ]
  // each node knows an old token, so its cache lets every later one through to Redis
  for (const node of nodes) node.seen(alice(['g0'], 1))
  await Promise.all(nodes.map(async (node) => await node.idle()))
  // issue times 2..61 in a scrambled order, alternating nodes, each a different group
  const times = Array.from({ length: 60 }, (_, i) => 2 + ((i * 37) % 60))
  times.forEach((issuedAt, i) => (nodes[i % 2] as RedisPrincipalDirectory).seen(alice([`g${issuedAt}`], issuedAt)))
  await Promise.all(nodes.map(async (node) => await node.idle()))
  for (const node of nodes) t.match(await node.latest(['alice']), [{ groups: ['g61'], issuedAt: 61 }])
  const raw = await redis.client().hget(`${prefix}known-principals`, 'alice')
  t.match(raw, /^61 /, 'what Redis holds')
})
