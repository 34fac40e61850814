import t from 'tap'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { startRedis } from '../helpers/redis.js'
import { eventually } from '../helpers/eventually.js'

// A node writes its live connections into the cluster presence again when its records were lost: Redis came back
// empty, or another node took it for dead (its lease lapsed during an outage) and removed them. Otherwise the other
// nodes count those devices as offline (the relay would push to them through FCM/APNs) until they reconnect.

t.test('the records of a node\'s connections come back after Redis lost them, and after another node removed them', async (t) => {
  const redis = await startRedis(t)
  const node = async (nodeId: string): Promise<TestBroker> => await startBroker(t, { overrides: { cluster: { redis: { url: redis.url }, nodeId } } })
  const a = await node('a')
  const b = await node('b')
  await connect(t, a.mqttUrl, { clientId: 'phone', clean: false, password: sign({ sub: 'alice' }) })
  const seenByB = (): boolean => b.server.broker?.port.isConnected('phone') === true
  await eventually('node b sees the phone on node a', seenByB)

  // Redis loses everything (restarted empty); the nodes' subscribers reconnect and read the presence again
  const admin = redis.client()
  const stored = async (): Promise<boolean> => await admin.hexists('herald:presence', 'phone') === 1
  await admin.flushall()
  t.notOk(await stored(), 'the record is gone')
  await admin.client('KILL', 'TYPE', 'pubsub')
  await eventually('node a writes the phone back into Redis', stored)
  await eventually('node b sees it', seenByB)

  // another node decided node a was dead and removed its records (what REMOVE_NODE does)
  await admin.hdel('herald:presence', 'phone')
  await admin.publish('herald:presence', '!a')
  await eventually('node a writes it back again', stored)
  await eventually('node b sees it', seenByB)
  t.ok(seenByB(), 'node b counts the phone as connected again')
})
