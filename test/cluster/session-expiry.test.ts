import t from 'tap'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { startRedis } from '../helpers/redis.js'
import { within } from '../helpers/within.js'

// limits.sessionExpirySec in a cluster: the last-seen records are in Redis, any node may see a client leave,
// and a node's sweep must not act on what it read at start: a session used on another node since stays.

const hour = 3_600_000
const alice = sign({ sub: 'alice' })

async function session (t: Parameters<typeof connect>[0], node: TestBroker, clientId: string): Promise<void> {
  const client = await connect(t, node.mqttUrl, { clientId, clean: false, password: alice })
  await client.subscribeAsync('users/alice/#', { qos: 1 })
  await client.endAsync()
}

async function stateOf (node: TestBroker, clientId: string): Promise<boolean> {
  const state = await node.server.broker?.sessions.sessionState(clientId)
  return state?.subscriptions === true
}

t.test('a node sweeps the sessions unused cluster-wide, not one used on another node since it started', async (t) => {
  const redis = await startRedis(t)
  let offsetMs = 0
  const now = (): number => Date.now() + offsetMs
  const node = async (nodeId: string, sweepSec: number): Promise<TestBroker> => await startBroker(t, {
    overrides: { cluster: { redis: { url: redis.url }, nodeId }, limits: { sessionExpirySec: 2 * 3600, sessionExpirySweepSec: sweepSec } },
    serverOptions: { now },
  })
  // a sweeps every second; b only at its start, so the sweeps that matter are a's, with what a read at its start
  const a = await node('a', 1)
  const b = await node('b', 3600)
  await session(t, a, 'old-phone')
  await session(t, a, 'busy-phone')
  await within(5000, 'both last-seen records stored', (async () => {
    while (await redis.client().hlen('herald:session-activity') < 2) await new Promise((resolve) => setTimeout(resolve, 20))
  })())

  // 1.5 h later busy-phone is used again, on node b
  offsetMs = 1.5 * hour
  await session(t, b, 'busy-phone')

  // 2.5 h: old-phone is 2.5 h unused, busy-phone 1 h
  offsetMs = 2.5 * hour
  await within(10_000, 'a sweep expires old-phone', (async () => {
    while (await stateOf(a, 'old-phone')) await new Promise((resolve) => setTimeout(resolve, 50))
  })())
  // that sweep has decided about busy-phone too once it releases the cluster's sweep lock
  await within(10_000, 'the sweep ends', (async () => {
    while (await redis.client().get('herald:session-expiry:lock') !== null) await new Promise((resolve) => setTimeout(resolve, 20))
  })())
  t.equal(await stateOf(b, 'busy-phone'), true, 'the session used on node b since is kept')
  t.equal(await redis.client().hexists('herald:session-activity', 'old-phone'), 0, 'the expired session\'s record is gone')
})
