import t from 'tap'
import { connect, nextMessage, sign, startBroker } from '../helpers/broker.js'

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
