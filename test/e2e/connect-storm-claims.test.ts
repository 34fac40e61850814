/**
 * A storm of new persistent sessions, the way a fleet comes online: their
 * client-id claims go to LevelDB in batches that overlap (group-commit.ts
 * `maxWriting`, backend/level.ts), while some owners take their claims back
 * with a clean session. After kill -9, every claim a CONNACK was sent for is
 * on disk, every released one is gone, and the sessions come back. Clients
 * we did not write: mqtt.js and Debian's mosquitto_sub, each with a will on a
 * topic its own subscription matches.
 */
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { TEST_SECRET, connackCode, connackOf, connect, makeTempDir, nextMessage, sign } from '../helpers/broker.js'
import { spawnBroker, type ChildBroker } from '../helpers/child-broker.js'
import { eventually } from '../helpers/eventually.js'

// HERALD_JWT_SECRET configures one key without a kid
const token = (sub: string, role = 'device'): string => sign({ sub, role }, { kid: null })
const intruder = token('intruder')
const service = token('backend', 'service')

const MQTTJS_DEVICES = 24
/** devices that connect and stay connected without subscribing: the bulk of the storm */
const CROWD = 150
const MOSQUITTO_DEVICES = 4
const RELEASED = 6

/** `herald start` on `dataDir`; every client of the test comes from 127.0.0.1, so the per-address limits are raised as behind a NAT gateway. */
async function spawnOn (t: Test, dataDir: string): Promise<ChildBroker> {
  const configFile = join(dataDir, 'herald.json')
  await writeFile(configFile, JSON.stringify({ limits: { connectRatePerIp: { points: 10_000, windowSec: 10 }, maxPendingConnectsPerIp: 10_000 } }))
  return await spawnBroker(t, { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET, HERALD_CONFIG: configFile })
}

/** A persistent mosquitto_sub with a will on its own user's topic; resolves once it has its SUBACK. */
async function mosquittoDevice (t: Test, broker: ChildBroker, user: string, clientId: string): Promise<void> {
  // -d: it tells when it has its SUBACK; stdbuf: its debug lines are block-buffered on a pipe otherwise
  const sub = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', clientId, '-c', '-q', '1',
    '-u', user, '-P', token(user), '-t', `users/${user}/#`, '--will-topic', `users/${user}/status`, '--will-payload', 'gone', '--will-qos', '1', '-d'])
  t.teardown(() => { sub.kill() })
  let output = ''
  sub.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  sub.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  await eventually(`${clientId} subscribed`, () => output.includes('received SUBACK'), 10_000)
}

t.test('a storm of new persistent sessions, some claims released during it: after kill -9 each claim is as the last CONNACK left it', async (t) => {
  const dataDir = await makeTempDir(t)
  const first = await spawnOn(t, dataDir)

  const mqttjsDevice = async (i: number): Promise<void> => {
    const user = `storm-user-${i}`
    const device = await connect(t, first.mqttUrl, {
      clientId: `storm-${i}`, clean: false, password: token(user),
      will: { topic: `users/${user}/status`, payload: Buffer.from('gone'), qos: 1, retain: false },
    })
    await device.subscribeAsync(`users/${user}/#`, { qos: 1 })
  }
  // connected with a persistent session (a claim), then again with a clean one: the claim is given back
  const releasing = async (i: number): Promise<void> => {
    const password = token(`released-user-${i}`)
    const persistent = await connect(t, first.mqttUrl, { clientId: `released-${i}`, clean: false, password })
    await persistent.endAsync()
    const clean = await connect(t, first.mqttUrl, { clientId: `released-${i}`, clean: true, password })
    await clean.endAsync()
  }
  const crowdDevice = async (i: number): Promise<void> => {
    await connect(t, first.mqttUrl, { clientId: `crowd-${i}`, clean: false, password: token(`crowd-user-${i}`) })
  }
  await Promise.all([
    ...Array.from({ length: CROWD }, async (_, i) => await crowdDevice(i)),
    ...Array.from({ length: MQTTJS_DEVICES }, async (_, i) => await mqttjsDevice(i)),
    ...Array.from({ length: MOSQUITTO_DEVICES }, async (_, i) => await mosquittoDevice(t, first, `moss-user-${i}`, `moss-${i}`)),
    ...Array.from({ length: RELEASED }, async (_, i) => await releasing(i)),
  ])

  first.child.kill('SIGKILL')
  t.equal(await first.exited, 'SIGKILL')
  const second = await spawnOn(t, dataDir)

  const claimed = [
    ...Array.from({ length: CROWD }, (_, i) => `crowd-${i}`),
    ...Array.from({ length: MQTTJS_DEVICES }, (_, i) => `storm-${i}`),
    ...Array.from({ length: MOSQUITTO_DEVICES }, (_, i) => `moss-${i}`),
  ]
  const refusedTo = await Promise.all(claimed.map(async (clientId) => await connackCode(second.mqttUrl, { clientId, clean: false, password: intruder })))
  t.same(refusedTo, claimed.map(() => 5), 'every claimed id refuses another user (CONNACK 5)')
  const released = Array.from({ length: RELEASED }, (_, i) => `released-${i}`)
  const takenBy = await Promise.all(released.map(async (clientId) => await connackCode(second.mqttUrl, { clientId, clean: true, password: intruder })))
  t.same(takenBy, released.map(() => 0), 'every released id is free for another user (CONNACK 0)')

  // the sessions are back: a message published after the restart reaches each subscription
  const backend = await connect(t, second.mqttUrl, { clientId: 'backend', password: service })
  for (const i of [0, MQTTJS_DEVICES - 1]) {
    const user = `storm-user-${i}`
    const device = await connect(t, second.mqttUrl, { clientId: `storm-${i}`, clean: false, password: token(user) })
    t.equal(connackOf(device).sessionPresent, true, `storm-${i}: its session survived kill -9`)
    const got = nextMessage(device, `users/${user}/news`)
    await backend.publishAsync(`users/${user}/news`, `for ${user}`, { qos: 1 })
    t.equal((await got).payload.toString(), `for ${user}`)
  }
})
