import t from 'tap'
import { api } from '../helpers/http.js'
import { connect, sign, startBroker } from '../helpers/broker.js'

const RECLAIMED = 'a storm of new connections is over: garbage collected'

t.test('a storm of MQTT connections is followed by one full garbage collection once it is over, logged and counted', async (t) => {
  let reclaimed: (line: Record<string, unknown>) => void = () => {}
  const logged = new Promise<Record<string, unknown>>((resolve) => { reclaimed = resolve })
  const broker = await startBroker(t, {
    overrides: { memory: { reclaimAfterConnections: 30, reclaimQuietSec: 1 } },
    captureLogs: true,
    onLog: (line) => { if (line.msg === RECLAIMED) reclaimed(line) },
  })
  // 30 devices, each its own user, as a fleet reconnecting: well over a twentieth of 30 per second
  await Promise.all(Array.from({ length: 30 }, async (_, i) => {
    await connect(t, broker.mqttUrl, { clientId: `storm-${i}`, clean: false, username: 'device', password: sign({ sub: `storm-user-${i}` }) })
  }))
  const line = await logged
  t.ok(Number(line.connections) >= 30, 'the storm\'s connections are logged')
  t.type(line.pauseMs, 'number')
  t.equal((line.heapUsedMB as number[]).length, 2, 'heap before and after')
  t.equal((line.rssMB as number[]).length, 2, 'RSS before and after')
  const metrics = await api(broker, 'GET', '/metrics')
  t.match(metrics.text, /^herald_memory_reclaim_pause_seconds_count 1$/m, 'counted once')
  t.equal(broker.logs.filter((l) => l.msg === RECLAIMED).length, 1, 'logged once')
})
