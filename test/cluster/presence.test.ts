import t from 'tap'
import { acquireNodeLease } from '../../src/cluster/node-lease.js'
import { openClusterPresence, type ClusterPresence } from '../../src/cluster/presence.js'
import { openRedisConnection } from '../../src/store/redis/connection.js'
import type { Teardown } from '../helpers/broker.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'
import { eventually } from '../helpers/eventually.js'

async function node (t: Teardown, redis: TestRedis, id: string, leaseMs = 60_000) {
  const conn = await openRedisConnection({ url: redis.url, keyPrefix: 'p:' })
  const lease = await acquireNodeLease(conn, { node: id, leaseMs })
  const presence = await openClusterPresence(conn, lease)
  lease.onNodeDead(async (dead) => await presence.removeNode(dead))
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await presence.close()
    await lease.close()
    await conn.close()
  }
  t.teardown(close)
  return { conn, lease, presence, close }
}

t.test('a connection on one node is seen by the other; a takeover by the same owner replaces it', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, 'a')
  const b = await node(t, redis, 'b')
  t.equal(await a.presence.register('dev1', 'user:alice', 'a:1'), undefined)
  await eventually('b sees dev1', () => b.presence.isConnected('dev1'), 5000, 5)
  t.equal(b.presence.ownerOf('dev1'), 'user:alice')
  t.equal(b.presence.countForOwner('user:alice', 'other'), 1)
  t.equal(b.presence.countForOwner('user:alice', 'dev1'), 0, 'the connection a CONNECT replaces is not counted')

  t.equal(await b.presence.register('dev1', 'user:alice', 'b:1'), undefined, 'same owner: takeover')
  // the old node's close comes after the takeover and must not remove the new record
  await a.presence.unregister('dev1', 'a:1')
  t.equal(await redis.client().hget('p:presence', 'dev1'), 'b\tuser:alice\tb:1')
  await b.presence.unregister('dev1', 'b:1')
  await eventually('a sees it gone', () => !a.presence.isConnected('dev1'), 5000, 5)
})

t.test('every node lists the connections of all nodes, by owner or all', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, 'a')
  const b = await node(t, redis, 'b')
  await a.presence.register('dev1', 'user:alice', 'a:1')
  await b.presence.register('dev2', 'user:alice', 'b:1')
  await b.presence.register('dev3', 'user:bob', 'b:2')
  const sorted = (list: Array<{ clientId: string }>): Array<{ clientId: string }> => [...list].sort((x, y) => x.clientId < y.clientId ? -1 : 1)
  await eventually('a sees all three', () => a.presence.list().length === 3, 5000, 5)
  t.same(sorted(a.presence.list()), [
    { clientId: 'dev1', node: 'a', owner: 'user:alice' },
    { clientId: 'dev2', node: 'b', owner: 'user:alice' },
    { clientId: 'dev3', node: 'b', owner: 'user:bob' },
  ])
  t.same(sorted(a.presence.list('user:alice')).map((e) => e.clientId), ['dev1', 'dev2'])
  t.same(a.presence.list('user:carol'), [])
  await b.presence.unregister('dev2', 'b:1')
  await eventually('a sees dev2 gone', () => a.presence.list('user:alice').length === 1, 5000, 5)
})

t.test('two nodes racing for one client id under different owners: exactly one wins', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, 'a')
  const b = await node(t, redis, 'b')
  const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const side: ClusterPresence = i % 2 === 0 ? a.presence : b.presence
    return await side.register('contested', `user:u${i}`, `${i}`)
  }))
  const winners = results.filter((holder) => holder === undefined)
  t.equal(winners.length, 1, 'one winner')
  const winner = await redis.client().hget('p:presence', 'contested')
  const owner = winner?.split('\t')[1]
  t.ok(results.every((holder) => holder === undefined || holder === owner), 'every loser is told the winner')
})

t.test('the records of a node whose lease expired are removed by the others', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, 'a', 300)
  const b = await node(t, redis, 'b', 300)
  await b.presence.register('devb', 'user:bob', 'b:1')
  await eventually('a sees devb', () => a.presence.isConnected('devb'), 5000, 5)
  // b dies without a word: its lease is no longer renewed (stop its timers by hand, keep its key to expire)
  await redis.client().set('p:node:b', 'x', 'PX', 300)
  await b.presence.close()
  ;(b.lease as unknown as { close (): Promise<void> }).close = async () => {}
  // a is a node with a 300 ms lease: its sweep finds b dead once the key expires
  await b.conn.close()
  await eventually('a drops devb', () => !a.presence.isConnected('devb'), 5000, 5)
  t.equal(await redis.client().hget('p:presence', 'devb'), null)
  t.same(await redis.client().smembers('p:nodes'), ['a'])
})
