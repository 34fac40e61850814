import { readdir } from 'node:fs/promises'
import t from 'tap'
import { connect, nextMessage, sign, startBroker } from '../helpers/broker.js'
import { connectInbox } from '../helpers/mqtt-inbox.js'

t.test('a user publishes and receives on its own topic over TCP and WebSocket', async (t) => {
  const broker = await startBroker(t)
  const token = sign({ sub: 'alice' })
  const tcp = await connect(t, broker.mqttUrl, { clientId: 'alice-tcp', password: token, username: 'alice' })
  const ws = await connect(t, broker.wsUrl, { clientId: 'alice-ws', password: token, username: 'alice' })
  await ws.subscribeAsync('users/alice/#', { qos: 1 })
  const received = nextMessage(ws, 'users/alice/notes')
  await tcp.publishAsync('users/alice/notes', 'hello', { qos: 1 })
  t.equal((await received).payload.toString(), 'hello')
})

t.test('storage.engine memory: a working broker that writes nothing to its data directory', async (t) => {
  const broker = await startBroker(t, { overrides: { storage: { engine: 'memory' } } })
  const token = sign({ sub: 'alice' })
  // a persistent session gets its queued message, as with LevelDB
  const phone = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: token })
  await phone.subscribeAsync('users/alice/#', { qos: 1 })
  await phone.endAsync()
  const sender = await connect(t, broker.mqttUrl, { clientId: 'alice-tcp', password: token })
  await sender.publishAsync('users/alice/notes', 'queued', { qos: 1 })
  const back = await connectInbox(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: token })
  t.equal(back.connack.sessionPresent, true)
  await back.waitFor(1)
  t.equal(back.messages[0]?.payload.toString(), 'queued')
  t.same(await readdir(broker.dataDir), [], 'no database directory')
})
