import t from 'tap'
import { openRedisConnection, redactRedisUrl } from '../../src/store/redis/connection.js'
import { freePort, startRedis } from '../helpers/redis.js'

t.test('keys and channels carry the key prefix', async (t) => {
  const redis = await startRedis(t)
  const conn = await openRedisConnection({ url: redis.url, keyPrefix: 'dep1:' })
  t.teardown(async () => await conn.close())
  await conn.client.set('k', 'v')
  t.equal(await redis.client().get('dep1:k'), 'v', 'stored under the prefix')
  t.equal(conn.channel('changes'), 'dep1:changes')
  const sub = conn.subscriber()
  await sub.subscribe(conn.channel('changes'))
  const got = new Promise<string>((resolve) => sub.on('message', (_channel: string, message: string) => resolve(message)))
  await conn.client.publish(conn.channel('changes'), 'hello')
  t.equal(await got, 'hello')
})

t.test('an unreachable Redis is a clear error naming the url without its password', async (t) => {
  const port = await freePort()
  const err = await openRedisConnection({ url: `redis://:hunter2-secret@127.0.0.1:${port}`, keyPrefix: 'x:' }, 500).then(() => undefined, (e: unknown) => e as Error)
  t.ok(err, 'rejected')
  t.match(err?.message, `cluster.redis.url: cannot reach Redis at redis://:***@127.0.0.1:${port}`)
  t.notMatch(err?.message, /hunter2/)
})

t.test('redactRedisUrl', async (t) => {
  t.equal(redactRedisUrl('redis://u:p@h:1/2'), 'redis://u:***@h:1/2')
  t.equal(redactRedisUrl('redis://h:1'), 'redis://h:1')
  t.equal(redactRedisUrl('not a url'), 'redis://(unparsable url)')
})
