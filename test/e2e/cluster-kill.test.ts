import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connect, makeTempDir, sign } from '../helpers/broker.js'
import type { ChildBroker } from '../helpers/child-broker.js'
import { startCluster } from '../helpers/cluster.js'
import { within } from '../helpers/within.js'

// Issue 16, "What it must show" 4: `kill -9` of one node under QoS 1 load.
// Persistent devices (clean=false, QoS 1 subscriptions) are connected to node A;
// a publisher on node C keeps publishing QoS 1 to them before, during and after
// A is killed; the devices reconnect to node B (what a device behind a load
// balancer does) while A's lease, and its presence records, still stand. At
// the end every message the publisher got a PUBACK for has reached its device;
// duplicates are allowed (QoS 1: those A sent whose PUBACK it never read), and
// counted.

const DEVICES = 10
const TOTAL = 1500
/** QoS 1 publishes in flight at once */
const WINDOW = 20
const url = (node: ChildBroker): string => `mqtt://127.0.0.1:${node.ports.mqtt}`

t.test('kill -9 of a node under QoS 1 load: its devices reconnect to another node, and every acknowledged message reaches them', async (t) => {
  // every client connects from 127.0.0.1: more CONNECTs than limits.connectRatePerIp's default allows
  const configFile = join(await makeTempDir(t), 'herald.json')
  await writeFile(configFile, JSON.stringify({ limits: { connectRatePerIp: { points: 10_000, windowSec: 1 } } }))
  const cluster = await startCluster(t, { nodes: 3, env: { HERALD_CONFIG: configFile } })
  const [a, b, c] = cluster.nodes
  if (a === undefined || b === undefined || c === undefined) throw new Error('three nodes expected')

  const devices = Array.from({ length: DEVICES }, (_, i) => ({
    options: { clientId: `dev-${i}-phone`, password: sign({ sub: `dev${i}` }), clean: false },
    topic: `users/dev${i}/inbox`,
    /** times each payload arrived, over all its connections */
    received: new Map<string, number>(),
    acknowledged: [] as string[],
    connection: undefined as MqttClient | undefined,
  }))
  const arrivals = new Set<() => void>()
  const onMessage = (device: (typeof devices)[number]) => (_topic: string, payload: Buffer): void => {
    const id = payload.toString()
    device.received.set(id, (device.received.get(id) ?? 0) + 1)
    for (const check of arrivals) check()
  }
  const until = async (what: string, ms: number, done: () => boolean): Promise<void> => {
    await within(ms, what, new Promise<void>((resolve) => {
      const check = (): void => {
        if (!done()) return
        arrivals.delete(check)
        resolve()
      }
      arrivals.add(check)
      check()
    }))
  }

  for (const device of devices) {
    device.connection = await connect(t, url(a), device.options, onMessage(device))
    await device.connection.subscribeAsync(device.topic, { qos: 1 })
  }
  const publisher = await connect(t, url(c), { clientId: 'svc-load', password: sign({ sub: 'svc', role: 'service' }) })
  let sent = 0
  const publishing = (async () => {
    const worker = async (): Promise<void> => {
      while (sent < TOTAL) {
        const n = sent++
        const device = devices[n % DEVICES]
        if (device === undefined) throw new Error('no device')
        await publisher.publishAsync(device.topic, `m${n}`, { qos: 1 })
        device.acknowledged.push(`m${n}`)
        for (const check of arrivals) check()
      }
    }
    await Promise.all(Array.from({ length: WINDOW }, worker))
  })()

  // under load: a third of the messages acknowledged, and the devices receiving them on A
  const acked = (): number => devices.reduce((sum, device) => sum + device.acknowledged.length, 0)
  await until('a third of the load acknowledged and arriving', 20_000, () => acked() >= TOTAL / 3 && devices.every((device) => device.received.size >= 5))
  const closed = devices.map(async (device) => await new Promise<void>((resolve) => device.connection?.once('close', () => resolve())))
  const ackedBeforeKill = acked()
  a.child.kill('SIGKILL')
  await within(5000, 'node A is gone', a.exited)
  await within(5000, 'every device sees its connection close', Promise.all(closed))

  // A's lease has not expired: its presence records still name it; the same owner may take over at once
  const presence = cluster.redis.client()
  const holder = await presence.hget('e2e:presence', 'dev-0-phone')
  t.match(holder, /^node-1\t/, 'the presence record of a device still names the killed node')
  for (const device of devices) {
    device.connection = await connect(t, url(b), device.options, onMessage(device))
  }
  const ackedWhileAway = acked() - ackedBeforeKill
  t.pass(`every device reconnected to node B (CONNACK 0) while the killed node's lease still stood; ${ackedWhileAway} messages acknowledged meanwhile`)

  await within(30_000, 'the publisher finishes', publishing)
  t.equal(acked(), TOTAL, 'the publisher got a PUBACK for every message, through the kill')
  const missing = (): string[] => devices.flatMap((device) => device.acknowledged.filter((id) => !device.received.has(id)))
  await until('every acknowledged message at its device', 20_000, () => missing().length === 0).catch(() => {})
  const duplicates = devices.reduce((sum, device) => sum + [...device.received.values()].reduce((extra, count) => extra + count - 1, 0), 0)
  const lost = missing()
  t.same(lost, [], `no acknowledged message lost (${TOTAL} acknowledged, ${ackedBeforeKill} before the kill; ${duplicates} duplicates)`)
  t.comment(`kill -9 under QoS 1 load: ${TOTAL} acknowledged, ${lost.length} lost, ${duplicates} duplicates`)
})
