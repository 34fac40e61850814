import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { sign, startBroker } from '../helpers/broker.js'

// Debian's mosquitto-clients, a second MQTT implementation next to mqtt.js (.ci/run installs it)
const run = promisify(execFile)

t.test('mosquitto_sub receives what mosquitto_pub publishes, with JWT auth', async (t) => {
  const broker = await startBroker(t)
  const port = String(broker.ports.mqtt)
  const aedes = broker.server.broker?.aedes
  if (aedes === undefined) throw new Error('broker not started')

  const subscribed = new Promise<void>((resolve) => aedes.once('subscribe', () => resolve()))
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-i', 'mosq-sub', '-u', 'alice', '-P', sign({ sub: 'alice' }), '-t', 'users/alice/#', '-q', '1', '-C', '1', '-v'])
  t.teardown(() => { sub.kill() })
  let output = ''
  sub.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  // 'close', not 'exit': 'exit' may come before the last stdout chunk has been read
  const exited = new Promise<number | null>((resolve) => sub.once('close', (code) => resolve(code)))
  await subscribed

  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-i', 'mosq-pub', '-u', 'svc', '-P', sign({ sub: 'svc', role: 'service' }), '-t', 'users/alice/inbox', '-m', 'from mosquitto', '-q', '1'])
  t.equal(await exited, 0)
  t.equal(output.trim(), 'users/alice/inbox from mosquitto')
})

t.test('mosquitto_pub with a bad token is refused with CONNACK 4', async (t) => {
  const broker = await startBroker(t)
  const refused = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-u', 'alice', '-P', 'not-a-jwt', '-t', 'users/alice/x', '-m', 'x'])
  const error = await refused.then(() => undefined, (err: { stderr?: string }) => err)
  t.ok(error, 'mosquitto_pub failed')
  t.match(error?.stderr, /bad user name or password/i)
})
