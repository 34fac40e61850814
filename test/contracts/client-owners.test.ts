/** ClientOwnerStore: one contract, run on LevelDB and on Redis; then what only a cluster has (several nodes on one Redis). */
import t, { type Test } from 'tap'
import type { ClientIdClaim, ClientOwnerStore } from '../../src/store/client-owners.js'
import { openClientOwnerStore } from '../../src/store/client-owners.js'
import { openRedisClientOwnerStore, type RedisClientOwnerStore } from '../../src/store/redis/client-owners.js'
import { startRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'
import { freshPrefix, nodeConnection, tempDatabase } from '../helpers/store-backends.js'

const redis = await startRedis(t)

interface Backend {
  /** a store, and a way to open it again as after a restart (LevelDB) or on another node (Redis) */
  open (t: Test): Promise<{ store: ClientOwnerStore, reopen: () => Promise<ClientOwnerStore> }>
}

const backends: Record<string, Backend> = {
  leveldb: {
    async open (t) {
      const database = await tempDatabase(t)
      return {
        store: await openClientOwnerStore(database.db()),
        reopen: async () => await openClientOwnerStore(await database.reopen()),
      }
    },
  },
  redis: {
    async open (t) {
      const prefix = freshPrefix()
      const node = async (): Promise<RedisClientOwnerStore> => await openRedisClientOwnerStore(await nodeConnection(t, redis, prefix))
      return { store: await node(), reopen: node }
    },
  },
}

const alice: ClientIdClaim = { owner: 'user:alice', installation: false }
const bob: ClientIdClaim = { owner: 'user:bob', installation: false }
const bobsDevice: ClientIdClaim = { owner: 'user:bob', installation: true }

for (const [name, backend] of Object.entries(backends)) {
  t.test(`${name}: set, get, delete, entries; kept when opened again`, async (t) => {
    const { store, reopen } = await backend.open(t)
    t.equal(store.get('phone'), undefined)
    await Promise.all([store.set('phone', alice), store.set('inst-1', bobsDevice), store.set('gone', bob)])
    await store.delete('gone')
    t.same(store.get('phone'), alice, 'read from memory once the write resolved')
    t.same([...store.entries()].sort(([a], [b]) => a.localeCompare(b)), [['inst-1', bobsDevice], ['phone', alice]])
    await store.delete('never-there')
    const again = await reopen()
    t.same(again.get('phone'), alice)
    t.same(again.get('inst-1'), bobsDevice)
    t.equal(again.get('gone'), undefined, 'a deleted claim stays deleted')
  })

  t.test(`${name}: claim stores a claim only on a free id and answers who holds it`, async (t) => {
    const { store } = await backend.open(t)
    t.same(await store.claim('phone', alice), alice, 'a free id: the claim is stored')
    t.same(store.get('phone'), alice)
    t.same(await store.claim('phone', bob), alice, 'a claimed id: the holder, unchanged')
    t.same(await store.claim('phone', { owner: 'user:alice', installation: true }), alice, 'the same owner gets the claim as it is')
    t.same(store.get('phone'), alice)
  })

  t.test(`${name}: release deletes only the claim it names`, async (t) => {
    const { store } = await backend.open(t)
    await store.set('phone', alice)
    t.equal(await store.release('phone', bob), false, 'another owner\'s')
    t.equal(await store.release('phone', { owner: 'user:alice', installation: true }), false, 'same owner, other kind')
    t.same(store.get('phone'), alice)
    t.equal(await store.release('phone', alice), true)
    t.equal(store.get('phone'), undefined)
    t.equal(await store.release('phone', alice), false, 'nothing left to release')
  })

  t.test(`${name}: ownsInstallation counts installations' claims per owner, through every change and a reopen`, async (t) => {
    const opened = await backend.open(t)
    let store = opened.store
    t.equal(store.ownsInstallation('user:bob'), false)
    await store.set('bob-session', bob)
    t.equal(store.ownsInstallation('user:bob'), false, 'a persistent session\'s claim is not an installation')
    await Promise.all([store.set('inst-1', bobsDevice), store.set('inst-2', bobsDevice)])
    t.equal(store.ownsInstallation('user:bob'), true)
    t.equal(store.ownsInstallation('user:alice'), false, 'only its owner')
    await store.delete('inst-1')
    t.equal(store.ownsInstallation('user:bob'), true, 'one installation left')
    store = await opened.reopen()
    t.equal(store.ownsInstallation('user:bob'), true, 'opened again')
    await store.set('inst-2', { owner: 'user:alice', installation: true })
    t.equal(store.ownsInstallation('user:bob'), false, 'the last one passed to another owner')
    t.equal(store.ownsInstallation('user:alice'), true)
    t.same(await store.claim('inst-3', bobsDevice), bobsDevice)
    t.equal(store.ownsInstallation('user:bob'), true, 'claimed')
    t.equal(await store.release('inst-3', bobsDevice), true)
    t.equal(store.ownsInstallation('user:bob'), false, 'released')
    t.equal((await opened.reopen()).ownsInstallation('user:bob'), false, 'opened again')
  })

  t.test(`${name}: 50 concurrent claims of one id: one is stored, all are told which`, async (t) => {
    const { store } = await backend.open(t)
    const claims = Array.from({ length: 50 }, (_, i): ClientIdClaim => ({ owner: `user:u${i}`, installation: false }))
    const answers = await Promise.all(claims.map(async (claim) => await store.claim('phone', claim)))
    const held = store.get('phone')
    t.ok(held !== undefined && claims.some((c) => c.owner === held.owner))
    t.ok(answers.every((answer) => answer.owner === held?.owner), 'every claimer is told the one holder')
  })
}

/** Two nodes' stores on one Redis, and the key prefix they share. */
async function twoNodes (t: Test): Promise<{ a: RedisClientOwnerStore, b: RedisClientOwnerStore, prefix: string }> {
  const prefix = freshPrefix()
  const a = await openRedisClientOwnerStore(await nodeConnection(t, redis, prefix))
  const b = await openRedisClientOwnerStore(await nodeConnection(t, redis, prefix))
  return { a, b, prefix }
}

t.test('redis, two nodes: a claim on one is in the other\'s mirror; a release too', async (t) => {
  const { a, b } = await twoNodes(t)
  await a.claim('phone', alice)
  await within(5000, 'b\'s mirror', b.mirror.until(() => b.get('phone') !== undefined))
  t.same(b.get('phone'), alice)
  t.same(await b.claim('phone', bob), alice, 'b is refused by a\'s claim')
  t.equal(await b.release('phone', alice), true)
  await within(5000, 'a\'s mirror', a.mirror.until(() => a.get('phone') === undefined))
  t.pass('the release reached a')
})

t.test('redis, two nodes: an installation claimed on one is owned on the other; a reload recounts', async (t) => {
  const { a, b, prefix } = await twoNodes(t)
  await a.set('inst-1', bobsDevice)
  await within(5000, 'b\'s mirror', b.mirror.until(() => b.get('inst-1') !== undefined))
  t.equal(b.ownsInstallation('user:bob'), true, 'from a\'s change message')
  // written behind the mirrors' backs (as a lost message would leave it), then a reload
  const test = redis.client()
  await test.hdel(`${prefix}client-owners`, 'inst-1')
  await test.hset(`${prefix}client-owners`, 'inst-9', JSON.stringify({ owner: 'user:carol', installation: true }))
  await b.mirror.reload()
  t.equal(b.ownsInstallation('user:bob'), false, 'what the reload read, not what was counted before')
  t.equal(b.ownsInstallation('user:carol'), true)
})

t.test('redis, two nodes: 50 owners racing for one client id across them, exactly one wins', async (t) => {
  const prefix = freshPrefix()
  const nodes = [
    await openRedisClientOwnerStore(await nodeConnection(t, redis, prefix)),
    await openRedisClientOwnerStore(await nodeConnection(t, redis, prefix)),
  ]
  const claims = Array.from({ length: 50 }, (_, i): ClientIdClaim => ({ owner: `user:u${i}`, installation: false }))
  const answers = await Promise.all(claims.map(async (claim, i) => await (nodes[i % 2] as RedisClientOwnerStore).claim('phone', claim)))
  const winners = claims.filter((claim, i) => answers[i]?.owner === claim.owner)
  t.equal(winners.length, 1, 'one winner')
  const winner = winners[0] as ClientIdClaim
  t.ok(answers.every((answer) => answer.owner === winner.owner), 'each of the 49 losers is told who holds the id')
  const stored = await redis.client().hget(`${prefix}client-owners`, 'phone')
  t.same(JSON.parse(stored ?? 'null'), winner, 'what Redis holds')
  for (const node of nodes) t.same(node.get('phone'), winner, 'both mirrors have the winner once the claims resolved')
})

t.test('redis: a mirror reloads when its subscriber reconnects, with what was written while it was away', async (t) => {
  const { a, b } = await twoNodes(t)
  await b.set('before', alice)
  await within(5000, 'a\'s mirror', a.mirror.until(() => a.get('before') !== undefined))
  const loads = a.mirror.loads
  const reloaded = a.mirror.nextLoad()
  const test = redis.client()
  // every subscriber connection, a's and b's; ioredis reconnects them after its backoff (100 ms at least)
  const killed = await test.client('KILL', 'TYPE', 'pubsub')
  t.ok(Number(killed) >= 2, 'the subscribers were killed')
  // written while a's subscriber is away (both sent at once: b's own writes wait for b's subscriber to be back)
  await Promise.all([b.set('during', bob), b.delete('before')])
  await within(5000, 'the reload', reloaded)
  t.ok(a.mirror.loads > loads, 'a reloaded')
  t.same(a.get('during'), bob, 'the claim made while it was away is there')
  t.equal(a.get('before'), undefined, 'and the one deleted meanwhile is gone')
  await b.set('after', alice)
  await within(5000, 'a\'s mirror', a.mirror.until(() => a.get('after') !== undefined))
  t.pass('changes flow again after the reconnect')
})

t.test('redis: a change message that went missing (a gap in the numbers) makes the mirror reload', async (t) => {
  const prefix = freshPrefix()
  const a = await openRedisClientOwnerStore(await nodeConnection(t, redis, prefix))
  const test = redis.client()
  // a write whose message was lost: in Redis, numbered, never published
  await test.hset(`${prefix}client-owners`, 'lost', JSON.stringify(alice))
  await test.incr(`${prefix}client-owners:seq`)
  const reloaded = a.mirror.nextLoad()
  await a.set('next', bob)
  await within(5000, 'the reload', reloaded)
  t.same(a.get('lost'), alice, 'the message after the gap brought the lost write in')
  t.same(a.get('next'), bob)
})
