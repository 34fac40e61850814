import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { connect, nextMessage, sign, startBroker } from '../helpers/broker.js'

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))
const ca = readFileSync(fixture('cert.pem'))

t.test('mqtts and wss listeners start when a certificate is configured', async (t) => {
  const broker = await startBroker(t, {
    overrides: { tls: { certFile: fixture('cert.pem'), keyFile: fixture('key.pem'), mqttPort: 0, httpsPort: 0 } },
  })
  t.type(broker.ports.mqtts, 'number')
  t.type(broker.ports.https, 'number')
  const token = sign({ sub: 'alice' })
  const overTls = await connect(t, `mqtts://localhost:${broker.ports.mqtts}`, { clientId: 'tls', password: token, ca })
  const overWss = await connect(t, `wss://localhost:${broker.ports.https}/mqtt`, { clientId: 'wss', password: token, ca })
  await overWss.subscribeAsync('users/alice/tls', { qos: 1 })
  const arrived = nextMessage(overWss, 'users/alice/tls')
  await overTls.publishAsync('users/alice/tls', 'secure', { qos: 1 })
  t.equal((await arrived).payload.toString(), 'secure')
})

t.test('no TLS listener without a certificate', async (t) => {
  const broker = await startBroker(t)
  t.equal(broker.ports.mqtts, null)
  t.equal(broker.ports.https, null)
})
