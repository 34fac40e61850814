/** AppTopicStore: one contract, run on LevelDB and on Redis; then what only a cluster has (several nodes on one Redis). */
import t, { type Test } from 'tap'
import { openAppTopicStore, type AppTopic, type AppTopicStore } from '../../src/store/app-topics.js'
import { openRedisAppTopicStore, type RedisAppTopicStore } from '../../src/store/redis/app-topics.js'
import { startRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'
import { freshPrefix, nodeConnection, tempDatabase } from '../helpers/store-backends.js'

const redis = await startRedis(t)

interface Backend {
  open (t: Test): Promise<{ store: AppTopicStore, reopen: () => Promise<AppTopicStore> }>
}

const backends: Record<string, Backend> = {
  leveldb: {
    async open (t) {
      const database = await tempDatabase(t)
      return { store: await openAppTopicStore(database.db()), reopen: async () => await openAppTopicStore(await database.reopen()) }
    },
  },
  redis: {
    async open (t) {
      const prefix = freshPrefix()
      const node = async (): Promise<RedisAppTopicStore> => await openRedisAppTopicStore(await nodeConnection(t, redis, prefix))
      return { store: await node(), reopen: node }
    },
  },
}

const topic = (name: string, subscribe = ['authenticated'], at = '2024-01-01T00:00:00.000Z'): AppTopic =>
  ({ name, acl: { subscribe, publish: ['role:service'] }, createdAt: at, updatedAt: at })

for (const [name, backend] of Object.entries(backends)) {
  t.test(`${name}: put, get, list, delete; kept when opened again`, async (t) => {
    const { store, reopen } = await backend.open(t)
    t.equal(store.get('news'), undefined)
    t.equal(await store.put(topic('news')), true)
    t.equal(await store.put(topic('alerts', ['group:ops'])), true)
    t.same(store.get('news'), { subscribe: ['authenticated'], publish: ['role:service'] }, 'the ACL, synchronously, once put resolved')
    t.same(store.getTopic('alerts'), topic('alerts', ['group:ops']))
    t.same(store.list().map((x) => x.name), ['alerts', 'news'], 'sorted by name')
    t.equal(await store.put(topic('news', ['user:alice'], '2024-02-01T00:00:00.000Z')), true, 'replaced')
    t.same(store.get('news')?.subscribe, ['user:alice'])
    t.equal(await store.delete('alerts'), true)
    t.equal(await store.delete('alerts'), false, 'nothing to delete')
    t.equal(store.get('alerts'), undefined)
    const again = await reopen()
    t.same(again.list(), [topic('news', ['user:alice'], '2024-02-01T00:00:00.000Z')])
  })

  t.test(`${name}: onlyIfAbsent writes nothing when the topic exists; concurrent creates, one wins`, async (t) => {
    const { store } = await backend.open(t)
    t.equal(await store.put(topic('news'), { onlyIfAbsent: true }), true)
    t.equal(await store.put(topic('news', ['user:bob']), { onlyIfAbsent: true }), false)
    t.same(store.get('news')?.subscribe, ['authenticated'], 'unchanged')
    const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await store.put(topic('race', [`user:u${i}`]), { onlyIfAbsent: true })))
    t.equal(results.filter(Boolean).length, 1, 'one create')
    const winner = results.indexOf(true)
    t.same(store.get('race')?.subscribe, [`user:u${winner}`], 'and the topic is the winner\'s')
  })
}

t.test('redis, two nodes: a change on one is in the other\'s mirror; creates race across them, one wins', async (t) => {
  const prefix = freshPrefix()
  const a = await openRedisAppTopicStore(await nodeConnection(t, redis, prefix))
  const b = await openRedisAppTopicStore(await nodeConnection(t, redis, prefix))
  await a.put(topic('news'))
  await within(5000, 'b\'s mirror', b.mirror.until(() => b.get('news') !== undefined))
  t.same(b.getTopic('news'), topic('news'))
  t.equal(await b.put(topic('news', ['user:bob']), { onlyIfAbsent: true }), false, 'b sees a\'s topic in Redis')
  await b.delete('news')
  await within(5000, 'a\'s mirror', a.mirror.until(() => a.get('news') === undefined))
  t.pass('a delete on b reaches a')

  const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => await (i % 2 === 0 ? a : b).put(topic('race', [`user:u${i}`]), { onlyIfAbsent: true })))
  t.equal(results.filter(Boolean).length, 1, 'exactly one create across both nodes')
  const winner = `user:u${results.indexOf(true)}`
  await Promise.all([a, b].map(async (node) => await within(5000, 'the mirror', node.mirror.until(() => node.get('race') !== undefined))))
  t.same([a.get('race')?.subscribe, b.get('race')?.subscribe], [[winner], [winner]], 'both mirrors agree on the winner')
})

t.test('redis: after a subscriber reconnect the mirror has what was written while it was away', async (t) => {
  const prefix = freshPrefix()
  const a = await openRedisAppTopicStore(await nodeConnection(t, redis, prefix))
  const b = await openRedisAppTopicStore(await nodeConnection(t, redis, prefix))
  const reloaded = a.mirror.nextLoad()
  await redis.client().client('KILL', 'TYPE', 'pubsub')
  await b.put(topic('news'))
  await within(5000, 'the reload', reloaded)
  t.same(a.getTopic('news'), topic('news'))
})
