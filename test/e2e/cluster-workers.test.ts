import t from 'tap'
import { connect, makeTempDir, sign, TEST_SECRET } from '../helpers/broker.js'
import { spawnBroker } from '../helpers/child-broker.js'
import { startRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'

// `herald start` with cluster.workers: a primary and N worker processes behind the same ports (node:cluster).

t.test('three workers share the ports, a killed worker is replaced, SIGTERM stops them all', async (t) => {
  const redis = await startRedis(t)
  const herald = await spawnBroker(t, {
    HERALD_DATA_DIR: await makeTempDir(t),
    HERALD_JWT_SECRET: TEST_SECRET,
    HERALD_CLUSTER_REDIS_URL: redis.url,
    HERALD_CLUSTER_KEY_PREFIX: 'workers:',
    HERALD_CLUSTER_WORKERS: '3',
  })
  const listening = (line: Record<string, unknown>): boolean => line.msg === 'herald listening'
  const nodes = async (count: number): Promise<string[]> => {
    await within(20_000, `${count} workers listening`, (async () => {
      while (herald.logs.filter(listening).length < count) {
        await herald.nextLog((line) => listening(line) && herald.logs.filter(listening).length >= count)
      }
    })())
    return herald.logs.filter(listening).map((line) => String(line.node))
  }
  const first = await nodes(3)
  t.equal(new Set(first).size, 3, 'three workers, each a node of its own')
  const ports = herald.logs.filter(listening).map((line) => JSON.stringify(line.ports))
  t.equal(new Set(ports).size, 1, 'all on the same ports')

  // connections are spread over the workers: a message crosses between them through Redis
  const url = herald.mqttUrl
  const subscribers = await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) => {
    const received: string[] = []
    const client = await connect(t, url, { clientId: `w-sub-${i}`, username: 'wendy', password: sign({ sub: 'wendy' }) }, (_topic, payload) => { received.push(payload.toString()) })
    await client.subscribeAsync('users/wendy/inbox', { qos: 1 })
    return { client, received }
  }))
  // node:cluster hands connections round-robin: the cluster presence says which worker holds each
  const holders = new Set((await redis.client().hvals('workers:presence')).map((value) => value.split('\t')[0]))
  t.ok(holders.size >= 2, `the six connections are held by ${holders.size} workers`)
  const publisher = await connect(t, url, { clientId: 'w-pub', username: 'svc', password: sign({ sub: 'svc', role: 'service' }) })
  await publisher.publishAsync('users/wendy/inbox', 'to every worker', { qos: 1 })
  await within(10_000, 'every subscriber, whichever worker holds it', Promise.all(subscribers.map(async ({ client, received }) => {
    if (received.length > 0) return
    await new Promise<void>((resolve) => client.once('message', () => resolve()))
  })))
  t.ok(subscribers.every(({ received }) => received[0] === 'to every worker'), 'all six got it')

  // kill one worker: the primary starts another (a new node id)
  const victim = first[0] ?? ''
  const pid = Number(victim.slice(victim.lastIndexOf('-') + 1))
  t.ok(pid > 0, `worker pid from its node id (${victim})`)
  process.kill(pid, 'SIGKILL')
  const after = await nodes(4)
  t.equal(after.length, 4, 'a fourth worker started')
  t.notOk(first.includes(after[3] ?? ''), 'with a node id of its own')

  herald.child.kill('SIGTERM')
  t.equal(await within(20_000, 'the primary exits', herald.exited), 0, 'SIGTERM stops every worker and the primary exits 0')
})
