import t from 'tap'
import { startRedis } from '../helpers/redis.js'

t.test('the test helper starts its own redis-server, and restarts it empty', async (t) => {
  const redis = await startRedis(t)
  const client = redis.client()
  await client.set('k', 'v')
  t.equal(await client.get('k'), 'v')
  await redis.stop({ kill: true })
  await redis.restart()
  const again = redis.client()
  t.equal(await again.get('k'), null, 'nothing was saved')
})
