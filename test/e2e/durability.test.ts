import t from 'tap'
import { TEST_SECRET, connect, connackOf, makeTempDir, sign } from '../helpers/broker.js'
import { spawnBroker } from '../helpers/child-broker.js'

// HERALD_JWT_SECRET configures one key without a kid
const token = (sub: string, role = 'device'): string => sign({ sub, role }, { kid: null })

t.test('QoS1 messages acknowledged right before kill -9 are delivered after restart', async (t) => {
  const dataDir = await makeTempDir(t)
  const env = { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET }
  const first = await spawnBroker(t, env)
  const url = `mqtt://127.0.0.1:${first.ports.mqtt}`

  // a device with a persistent session subscribes, then goes offline
  const device = await connect(t, url, { clientId: 'phone-1', clean: false, password: token('alice') })
  await device.subscribeAsync('users/alice/#', { qos: 1 })
  await device.endAsync()

  const server = await connect(t, url, { clientId: 'backend', password: token('backend', 'service') })
  const sent = ['one', 'two', 'three']
  for (const body of sent) await server.publishAsync('users/alice/news', body, { qos: 1 })
  // the last PUBACK is in: kill the broker before it can do anything else
  first.child.kill('SIGKILL')
  t.equal(await first.exited, 'SIGKILL')
  server.end(true)

  const second = await spawnBroker(t, env)
  const received: string[] = []
  const allArrived = new Promise<void>((resolve) => {
    const onMessage = (_topic: string, payload: Buffer): void => {
      received.push(payload.toString())
      if (received.length === sent.length) resolve()
    }
    void connect(t, `mqtt://127.0.0.1:${second.ports.mqtt}`, { clientId: 'phone-1', clean: false, password: token('alice') }, onMessage)
  })
  await allArrived
  t.same(received, sent)
})

t.test('SIGTERM closes clients, flushes the store and exits 0', async (t) => {
  const dataDir = await makeTempDir(t)
  const env = { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET }
  const broker = await spawnBroker(t, env)
  const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`
  const device = await connect(t, url, { clientId: 'phone-1', clean: false, password: token('alice') })
  await device.subscribeAsync('users/alice/#', { qos: 1 })
  const closed = new Promise<void>((resolve) => device.once('close', () => resolve()))

  broker.child.kill('SIGTERM')
  t.equal(await broker.exited, 0, 'exit code 0')
  await closed

  // the store was closed cleanly: a new broker opens it and finds the session
  const again = await spawnBroker(t, env)
  const back = await connect(t, `mqtt://127.0.0.1:${again.ports.mqtt}`, { clientId: 'phone-1', clean: false, password: token('alice') })
  t.equal(connackOf(back).sessionPresent, true, 'the persistent session survived')
})
