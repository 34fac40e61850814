import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { api } from '../helpers/http.js'
import { connect, nextMessage, sign, startBroker } from '../helpers/broker.js'
import { mosquittoSubOne } from '../helpers/mosquitto-sub.js'

const run = promisify(execFile)
const RECLAIMED = 'a storm of new connections is over: garbage collected'

t.test('a storm of MQTT connections is followed by one full garbage collection once it is over, and every session goes on', async (t) => {
  let reclaimed: (line: Record<string, unknown>) => void = () => {}
  const logged = new Promise<Record<string, unknown>>((resolve) => { reclaimed = resolve })
  const broker = await startBroker(t, {
    overrides: { memory: { reclaimAfterConnections: 30, reclaimQuietSec: 1 } },
    captureLogs: true,
    onLog: (line) => { if (line.msg === RECLAIMED) reclaimed(line) },
  })
  // 30 devices, each its own user, as a fleet reconnecting: well over a twentieth of 30 per second;
  // persistent mqtt.js sessions subscribed to their user's topics; a clean mosquitto_sub comes with them or after
  const devices = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
    const device = await connect(t, broker.mqttUrl, { clientId: `storm-${i}`, clean: false, password: sign({ sub: `storm-user-${i}` }) })
    await device.subscribeAsync(`users/storm-user-${i}/#`, { qos: 1 })
    return device
  }))
  const watcher = await mosquittoSubOne(t, broker, { clientId: 'storm-mosquitto', token: sign({ sub: 'storm-user-0' }), topic: 'users/storm-user-0/#', qos: 1 })

  const line = await logged
  t.ok(Number(line.connections) >= 30, 'the storm\'s connections are logged')
  t.type(line.pauseMs, 'number')
  t.equal((line.heapUsedMB as number[]).length, 2, 'heap before and after')
  t.equal((line.rssMB as number[]).length, 2, 'RSS before and after')
  const metrics = await api(broker, 'GET', '/metrics')
  t.match(metrics.text, /^herald_memory_reclaim_pause_seconds_count 1$/m, 'counted once')
  t.equal(broker.logs.filter((l) => l.msg === RECLAIMED).length, 1, 'logged once')

  // after the collection: a QoS 1 message from mosquitto_pub reaches the persistent mqtt.js session and the clean mosquitto_sub
  const device = devices[0]
  if (device === undefined) throw new Error('no device')
  const received = nextMessage(device, 'users/storm-user-0/news')
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', 'storm-backend', '-u', 'svc',
    '-P', sign({ sub: 'backend', role: 'service' }), '-t', 'users/storm-user-0/news', '-m', 'after the collection', '-q', '1'])
  t.equal((await received).payload.toString(), 'after the collection')
  t.equal((await watcher.message).trim(), 'after the collection')
})
