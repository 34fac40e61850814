import msgpack from 'msgpack-lite'
import t, { type Test } from 'tap'
import { openRedisConnection } from '../../src/store/redis/connection.js'
import { RedisSessionStore } from '../../src/store/redis/session-store.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'

// Exact filters (no wildcard: a device's inbox) are matched in Redis, one
// hash per topic, instead of in a trie every node keeps of the whole cluster
// (store/redis/subscriptions.ts): what a node subscribes is matched by every
// other node at once, and a QoS 0 subscription or an unsubscribe takes it out.

const PREFIX = 'test:'

async function openNode (t: Test, redis: TestRedis, brokerId: string): Promise<RedisSessionStore> {
  const conn = await openRedisConnection({ url: redis.url, keyPrefix: PREFIX })
  const store = new RedisSessionStore(conn)
  await store.setup({ id: brokerId })
  t.teardown(async () => {
    await store.destroy()
    await conn.close()
  })
  return store
}

const matched = async (store: RedisSessionStore, topic: string): Promise<Array<[string, number]>> =>
  (await store.subscriptionsByTopic(topic)).map((sub): [string, number] => [sub.clientId, sub.qos]).sort()

async function clientList (store: RedisSessionStore, filter: string): Promise<string[]> {
  const ids: string[] = []
  for await (const id of store.getClientList(filter)) ids.push(String(id))
  return ids.sort()
}

t.test('an exact subscription made on one node is matched by another at once, and leaves with QoS 0, unsubscribe or the session', async (t) => {
  const redis = await startRedis(t)
  const a = await openNode(t, redis, 'node-a')
  const b = await openNode(t, redis, 'node-b')

  await a.addSubscriptions({ id: 'phone' }, [{ topic: 'users/u1/inbox', qos: 1 }, { topic: 'users/u1/#', qos: 2 }])
  await a.addSubscriptions({ id: 'tablet' }, [{ topic: 'users/u1/inbox', qos: 2 }])
  // no wait for a change message: the exact ones are read from Redis by whoever matches
  t.same(await matched(b, 'users/u1/inbox'), [['phone', 2], ['tablet', 2]], 'node b: one per client, at the highest QoS of its filters')
  t.same(await a.countOffline(), { subsCount: 3, clientsCount: 2 }, 'the exact ones are counted with the wildcard')
  t.same(await clientList(b, 'users/u1/inbox'), ['phone', 'tablet'], 'getClientList of an exact filter')
  t.same((await b.subscriptionsByClient({ id: 'phone' })).map((sub) => [sub.topic, sub.qos]).sort(), [['users/u1/#', 2], ['users/u1/inbox', 1]])

  await b.addSubscriptions({ id: 'tablet' }, [{ topic: 'users/u1/inbox', qos: 0 }])
  t.same((await matched(a, 'users/u1/inbox')).map(([id]) => id), ['phone'], 'a QoS 0 subscription replaces the tablet\'s: it queues nothing')
  await b.removeSubscriptions({ id: 'phone' }, ['users/u1/inbox'])
  t.same((await matched(b, 'users/u1/inbox')).map(([id]) => id), ['phone'], 'after unsubscribing the exact filter, the phone\'s wildcard still matches')
  t.same((await a.countOffline()).subsCount, 1, 'the wildcard alone is counted')

  await a.deleteSession('phone')
  await b.deleteSession('tablet')
  t.same(await matched(a, 'users/u1/inbox'), [])
  t.same(await redis.client().keys(`${PREFIX}sessions:topic:*`), [], 'no topic hash is left')
  t.same(await redis.client().get(`${PREFIX}sessions:exact-subscriptions-count`), null, 'nor the count')
})

t.test('the topic hashes hold what the clients\' hashes hold, whatever the filter\'s characters', async (t) => {
  const redis = await startRedis(t)
  const a = await openNode(t, redis, 'node-a')
  const b = await openNode(t, redis, 'node-b')
  const topics = ['a:b/c d', 'ü/é', '$app/x', 'trailing/', '/leading']
  await a.addSubscriptions({ id: 'c:1' }, topics.map((topic) => ({ topic, qos: 1 })))
  for (const topic of topics) t.same(await matched(b, topic), [['c:1', 1]], topic)
  t.same(await matched(b, 'a:b/c'), [], 'only the exact topic')
  const stored = await redis.client().hgetallBuffer(`${PREFIX}sessions:topic:a:b/c d`)
  t.same(msgpack.decode(stored['c:1'] as Buffer), { topic: 'a:b/c d', qos: 1 }, 'the subscription as the client\'s hash has it')
})
