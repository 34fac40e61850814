import { spawn } from 'node:child_process'
import t, { type Test } from 'tap'
import { TEST_SECRET, connect, connackOf, makeTempDir, sign } from '../helpers/broker.js'
import { spawnBroker, type ChildBroker } from '../helpers/child-broker.js'
import { connectInbox, text } from '../helpers/mqtt-inbox.js'
import { within } from '../helpers/within.js'

// HERALD_JWT_SECRET configures one key without a kid
const token = (sub: string, role = 'device'): string => sign({ sub, role }, { kid: null })

/** alice's phone and tablet, each with a persistent session */
const phone = { clientId: 'phone-1', clean: false, password: token('alice') }
const tablet = { clientId: 'tablet-1', clean: false, password: token('alice') }

/** `herald start` as a child process on `dataDir`, trusting the test secret. */
async function spawnOn (t: Test, dataDir: string): Promise<ChildBroker> {
  return await spawnBroker(t, { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET })
}

/**
 * A service publishes three QoS1 messages to alice, each awaited (its PUBACK is in), and the broker
 * is killed right after the last one, before it can do anything else. Returns what was sent.
 */
async function publishThenKill (t: Test, broker: ChildBroker): Promise<string[]> {
  const server = await connect(t, broker.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })
  const sent = ['one', 'two', 'three']
  for (const body of sent) await server.publishAsync('users/alice/news', body, { qos: 1 })
  broker.child.kill('SIGKILL')
  t.equal(await broker.exited, 'SIGKILL')
  server.end(true)
  return sent
}

// one persistent subscriber: the message is its queue entry; several: one record of the message and
// its recipients until they acknowledge or the hold is over (src/store/fresh-messages.ts)
for (const devices of [[phone], [phone, tablet]]) {
  t.test(`QoS1 messages acknowledged right before kill -9 are delivered after restart (${devices.length} subscriber(s))`, async (t) => {
    const dataDir = await makeTempDir(t)
    const first = await spawnOn(t, dataDir)

    // devices with a persistent session subscribe, then go offline
    for (const options of devices) {
      const device = await connect(t, first.mqttUrl, options)
      await device.subscribeAsync('users/alice/#', { qos: 1 })
      await device.endAsync()
    }

    const sent = await publishThenKill(t, first)

    const second = await spawnOn(t, dataDir)
    for (const options of devices) {
      const back = await connectInbox(t, second.mqttUrl, options)
      await back.waitFor(sent.length)
      t.same(back.messages.map(text), sent, `${options.clientId} got every message`)
    }
  })
}

t.test('a connected subscriber that has not acknowledged a QoS1 message when its PUBACK comes gets it after kill -9', async (t) => {
  const dataDir = await makeTempDir(t)
  const first = await spawnOn(t, dataDir)
  // the phone receives and never acknowledges (mqtt.js acknowledges when handleMessage calls back)
  const phoneLive = await connect(t, first.mqttUrl, phone)
  phoneLive.handleMessage = () => {}
  await phoneLive.subscribeAsync('users/alice/#', { qos: 1 })

  // each PUBACK comes once storage.ackWaitMs is over and the message is on disk
  const sent = await publishThenKill(t, first)
  phoneLive.end(true)

  const second = await spawnOn(t, dataDir)
  const back = await connectInbox(t, second.mqttUrl, phone)
  await back.waitFor(sent.length)
  t.same(back.messages.map(text), sent, 'the phone gets every message it had not acknowledged')
})

t.test('two connected subscribers, mosquitto_sub acknowledging and the phone never: after kill -9 only the phone gets the messages again', async (t) => {
  const dataDir = await makeTempDir(t)
  // The publisher's PUBACK waits up to ackWaitMs for the phone, then the message's record goes to disk
  // naming the recipients that have not acknowledged (src/store/fresh-messages.ts): a second is always
  // long enough for mosquitto_sub's PUBACKs to be in before that.
  const env = { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET, HERALD_STORAGE_ACK_WAIT_MS: '1000' }
  const first = await spawnBroker(t, env)
  const phoneLive = await connect(t, first.mqttUrl, phone)
  phoneLive.handleMessage = () => {}
  await phoneLive.subscribeAsync('users/alice/#', { qos: 1 })

  // the tablet: mosquitto_sub with a persistent session (-c), three messages and it disconnects; its
  // protocol log (-d) line-buffered (stdbuf, coreutils) tells when it has subscribed
  const tablet1 = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(first.ports.mqtt), '-i', tablet.clientId, '-c', '-u', 'alice', '-P', tablet.password,
    '-t', 'users/alice/#', '-q', '1', '-C', '3', '-d', '-v'])
  t.teardown(() => { tablet1.kill() })
  let output = ''
  const subscribed = new Promise<void>((resolve) => {
    tablet1.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); if (output.includes('received SUBACK')) resolve() })
  })
  const tabletDone = new Promise<void>((resolve) => tablet1.once('close', () => resolve()))
  await within(5000, 'mosquitto_sub subscribed', subscribed)

  const server = await connect(t, first.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })
  const sent = ['one', 'two', 'three']
  await Promise.all(sent.map(async (body) => await server.publishAsync('users/alice/news', body, { qos: 1 })))
  await within(5000, 'mosquitto_sub got all three', tabletDone)
  // -d prints its protocol log on stdout too; -v prefixes each message with its topic
  const received = output.split('\n').filter((line) => line.startsWith('users/alice/news ')).map((line) => line.slice('users/alice/news '.length))
  t.same(received, sent, 'mosquitto_sub got each message once')
  first.child.kill('SIGKILL')
  t.equal(await first.exited, 'SIGKILL')
  phoneLive.end(true)
  server.end(true)

  const second = await spawnBroker(t, env)
  const phoneBack = await connectInbox(t, second.mqttUrl, phone)
  await phoneBack.waitFor(sent.length)
  t.same(phoneBack.messages.map(text), sent, 'the phone gets every message it had not acknowledged')

  // a session's queue comes before anything published after its CONNECT: a marker sent now arrives first unless something is queued
  const tabletBack = await connectInbox(t, second.mqttUrl, tablet)
  const server2 = await connect(t, second.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })
  await server2.publishAsync('users/alice/news', 'after restart', { qos: 1 })
  await tabletBack.waitFor(1)
  t.same(tabletBack.messages.map(text), ['after restart'], 'the tablet, which had acknowledged, gets nothing again')
})

t.test('SIGTERM closes clients, flushes the store and exits 0', async (t) => {
  const dataDir = await makeTempDir(t)
  const broker = await spawnOn(t, dataDir)
  const device = await connect(t, broker.mqttUrl, phone)
  await device.subscribeAsync('users/alice/#', { qos: 1 })
  const closed = new Promise<void>((resolve) => device.once('close', () => resolve()))

  broker.child.kill('SIGTERM')
  t.equal(await broker.exited, 0, 'exit code 0')
  await closed

  // the store was closed cleanly: a new broker opens it and finds the session
  const again = await spawnOn(t, dataDir)
  const back = await connect(t, again.mqttUrl, phone)
  t.equal(connackOf(back).sessionPresent, true, 'the persistent session survived')
})
