import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { sign, startBroker } from '../helpers/broker.js'

// Eclipse Paho (Debian's python3-paho-mqtt, installed by .ci/run) as a third independent client.
const run = promisify(execFile)
const script = fileURLToPath(new URL('../interop/paho_overlapping.py', import.meta.url))
// Debian's interpreter, where python3-paho-mqtt is installed (a pyenv python3 may come first on PATH)
const python = '/usr/bin/python3'

t.test('Paho test_overlapping_subscriptions: one copy of the message, at QoS 2', async (t) => {
  const broker = await startBroker(t)
  const { stdout } = await run(python, [script, String(broker.ports.mqtt), 'users/alice'], {
    env: { ...process.env, HERALD_TOKEN: sign({ sub: 'alice' }) },
    timeout: 20_000,
  })
  t.same(JSON.parse(stdout), { copies: [2], marker: true })
})
