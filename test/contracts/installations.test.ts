/** InstallationStore: one contract, run on LevelDB and on Redis; then what only a cluster has (several nodes on one Redis). */
import t, { type Test } from 'tap'
import { isHeraldError } from '../../src/errors/index.js'
import { openInstallationStore, type Installation, type InstallationStore, type PushToken } from '../../src/store/installations.js'
import { openRedisInstallationStore, type RedisInstallationStore } from '../../src/store/redis/installations.js'
import { startRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'
import { freshPrefix, nodeConnection, tempDatabase } from '../helpers/store-backends.js'

const redis = await startRedis(t)

interface Backend {
  open (t: Test): Promise<{ store: InstallationStore, reopen: () => Promise<InstallationStore> }>
}

const backends: Record<string, Backend> = {
  leveldb: {
    async open (t) {
      const database = await tempDatabase(t)
      return { store: await openInstallationStore(database.db()), reopen: async () => await openInstallationStore(await database.reopen()) }
    },
  },
  redis: {
    async open (t) {
      const prefix = freshPrefix()
      const node = async (): Promise<RedisInstallationStore> => await openRedisInstallationStore(await nodeConnection(t, redis, prefix))
      return { store: await node(), reopen: node }
    },
  },
}

const fcm = (token: string): PushToken => ({ provider: 'fcm', token, environment: null, apnsTopic: null })
const at = '2024-01-01T00:00:00.000Z'
const device = (id: string, owner = 'alice', extra: Partial<Installation> = {}): Installation =>
  ({ id, owner, ownerGroups: [], mqtt: true, pushToken: null, createdAt: at, updatedAt: at, ...extra })

async function refusal (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    if (isHeraldError(err)) return err.code
    throw err
  }
  return 'stored'
}

for (const [name, backend] of Object.entries(backends)) {
  t.test(`${name}: put, get, getMany, listByOwner, the routing flags, delete; kept when opened again`, async (t) => {
    const { store, reopen } = await backend.open(t)
    await store.put(device('b-phone'))
    await store.put(device('a-tablet', 'alice', { mqtt: false, pushToken: fcm('tok-1'), ownerGroups: ['ops'] }))
    await store.put(device('c-bob', 'bob'))
    t.same(await store.get('a-tablet'), device('a-tablet', 'alice', { mqtt: false, pushToken: fcm('tok-1'), ownerGroups: ['ops'] }))
    t.same(await store.get('b-phone'), device('b-phone'), 'an empty group list stays a list')
    t.equal(await store.get('nope'), undefined)
    t.same((await store.getMany(['c-bob', 'nope', 'b-phone'])).map((i) => i?.id), ['c-bob', undefined, 'b-phone'], 'in order')
    t.same(await store.getMany([]), [])
    t.same((await store.listByOwner('alice')).map((i) => i.id), ['a-tablet', 'b-phone'], 'by id')
    t.same(await store.listByOwner('nobody'), [])
    t.same([store.isPushOnly('a-tablet'), store.hasPushToken('a-tablet'), store.isPushOnly('b-phone'), store.hasPushToken('b-phone')], [true, true, false, false])
    t.same([store.isPushOnly('nope'), store.hasPushToken('nope')], [false, false])

    await store.put(device('b-phone', 'bob', { updatedAt: 'later' }))
    t.same((await store.listByOwner('alice')).map((i) => i.id), ['a-tablet'], 'an installation given to another owner leaves the first')
    t.same((await store.listByOwner('bob')).map((i) => i.id), ['b-phone', 'c-bob'])

    t.same(await store.delete('a-tablet'), device('a-tablet', 'alice', { mqtt: false, pushToken: fcm('tok-1'), ownerGroups: ['ops'] }), 'delete returns what it deleted')
    t.equal(await store.delete('a-tablet'), undefined)
    t.same([store.isPushOnly('a-tablet'), store.hasPushToken('a-tablet')], [false, false])
    await store.put(device('d-new', 'carol', { pushToken: fcm('tok-1') }))
    t.same((await store.get('d-new'))?.pushToken, fcm('tok-1'), 'a deleted installation\'s token is free')

    const again = await reopen()
    t.same((await again.listByOwner('bob')).map((i) => i.id), ['b-phone', 'c-bob'])
    t.equal(again.hasPushToken('d-new'), true, 'the routing flags are loaded')
    t.equal(again.isPushOnly('b-phone'), false)
  })

  t.test(`${name}: a push token moves to the installation that registers it last`, async (t) => {
    const { store } = await backend.open(t)
    await store.put(device('old', 'alice', { pushToken: fcm('shared') }))
    await store.put(device('new', 'bob', { pushToken: fcm('shared'), updatedAt: 'moved' }))
    t.same(await store.get('old'), device('old', 'alice', { updatedAt: 'moved' }), 'the old installation has no token, updated when it lost it')
    t.same([store.hasPushToken('old'), store.hasPushToken('new')], [false, true])
    // the old one registers a token of its own again; the new one keeps the shared one
    await store.put(device('old', 'alice', { pushToken: fcm('own') }))
    t.same((await store.get('new'))?.pushToken, fcm('shared'))
    // a new token for the new one frees the shared one: registering it again takes nothing from anybody
    await store.put(device('new', 'bob', { pushToken: fcm('newer') }))
    await store.put(device('third', 'carol', { pushToken: fcm('shared') }))
    t.same((await store.get('new'))?.pushToken, fcm('newer'))
    t.same((await store.get('old'))?.pushToken, fcm('own'))
  })

  t.test(`${name}: prunePushToken removes the token the provider refused, not a newer one`, async (t) => {
    const { store } = await backend.open(t)
    await store.put(device('phone', 'alice', { pushToken: fcm('dead') }))
    await store.prunePushToken('phone', 'other')
    t.equal(store.hasPushToken('phone'), true, 'another token: nothing')
    await store.prunePushToken('phone', 'dead')
    t.equal((await store.get('phone'))?.pushToken, null)
    t.equal(store.hasPushToken('phone'), false)
    await store.prunePushToken('nope', 'dead')
    await store.put(device('other', 'bob', { pushToken: fcm('dead') }))
    t.same((await store.get('other'))?.pushToken, fcm('dead'), 'a pruned token is free')
    t.same((await store.get('phone'))?.pushToken, null)
  })

  t.test(`${name}: maxPerOwner refuses a new installation past the limit, checked with the write`, async (t) => {
    const { store } = await backend.open(t)
    const results = await Promise.all(Array.from({ length: 10 }, async (_, i) => await refusal(store.put(device(`d${i}`), { maxPerOwner: 3 }))))
    t.equal(results.filter((r) => r === 'stored').length, 3)
    t.equal(results.filter((r) => r === 'TOO_MANY_INSTALLATIONS').length, 7)
    const mine = await store.listByOwner('alice')
    t.equal(mine.length, 3)
    const first = mine[0] as Installation
    t.equal(await refusal(store.put({ ...first, mqtt: false }, { maxPerOwner: 3 })), 'stored', 'a changed installation is no new one')
    t.equal(await refusal(store.put(device('bobs', 'bob'), { maxPerOwner: 3 })), 'stored', 'other owners are not affected')
    await store.delete(first.id)
    t.equal(await refusal(store.put(device('replacement'), { maxPerOwner: 3 })), 'stored', 'a delete makes room')
  })
}

const twoNodes = async (t: Test, prefix = freshPrefix()): Promise<[RedisInstallationStore, RedisInstallationStore]> => [
  await openRedisInstallationStore(await nodeConnection(t, redis, prefix)),
  await openRedisInstallationStore(await nodeConnection(t, redis, prefix)),
]

t.test('redis, two nodes: a write on one is in the other\'s routing flags', async (t) => {
  const [a, b] = await twoNodes(t)
  await a.put(device('phone', 'alice', { mqtt: false, pushToken: fcm('x') }))
  await within(5000, 'b\'s mirror', b.mirror.until(() => b.hasPushToken('phone')))
  t.equal(b.isPushOnly('phone'), true)
  t.same(await b.get('phone'), device('phone', 'alice', { mqtt: false, pushToken: fcm('x') }))
  await b.put(device('tablet', 'bob', { pushToken: fcm('x') }))
  await within(5000, 'a\'s mirror', a.mirror.until(() => !a.hasPushToken('phone') && a.hasPushToken('tablet')))
  t.pass('a token moved on b is seen moved on a')
  await b.delete('tablet')
  await within(5000, 'a\'s mirror', a.mirror.until(() => !a.hasPushToken('tablet')))
  t.pass('a delete on b reaches a')
})

t.test('redis, two nodes: registrations racing across them never exceed maxPerOwner', async (t) => {
  const prefix = freshPrefix()
  const [a, b] = await twoNodes(t, prefix)
  const results = await Promise.all(Array.from({ length: 30 }, async (_, i) => await refusal((i % 2 === 0 ? a : b).put(device(`d${i}`), { maxPerOwner: 5 }))))
  t.equal(results.filter((r) => r === 'stored').length, 5, 'exactly the limit')
  t.equal((await a.listByOwner('alice')).length, 5)
  t.equal(await redis.client().scard(`${prefix}installations:owner:alice`), 5)
})

t.test('redis, two nodes: one push token registered on both at once ends on one installation', async (t) => {
  const [a, b] = await twoNodes(t)
  const ids = Array.from({ length: 20 }, (_, i) => `d${i}`)
  await Promise.all(ids.map(async (id, i) => await (i % 2 === 0 ? a : b).put(device(id, `u${i}`, { pushToken: fcm('shared') }))))
  const all = await a.getMany(ids)
  const holders = all.filter((i) => i?.pushToken !== null)
  t.equal(holders.length, 1, 'one installation holds the token')
  const holder = holders[0]?.id as string
  await Promise.all([a, b].map(async (node) => await within(5000, 'the mirror', node.mirror.until(() => ids.filter((id) => node.hasPushToken(id)).length === 1))))
  t.same([a.hasPushToken(holder), b.hasPushToken(holder)], [true, true], 'both nodes agree which')
  // the token index agrees too: registering it once more takes it from the holder
  await a.put(device('last', 'zed', { pushToken: fcm('shared') }))
  t.equal((await b.get(holder))?.pushToken, null)
})

t.test('redis: after a subscriber reconnect the routing flags have what was written while it was away', async (t) => {
  const [a, b] = await twoNodes(t)
  const reloaded = a.mirror.nextLoad()
  await redis.client().client('KILL', 'TYPE', 'pubsub')
  await b.put(device('phone', 'alice', { mqtt: false }))
  await within(5000, 'the reload', reloaded)
  t.equal(a.isPushOnly('phone'), true)
})
