import { constants } from 'node:fs'
import { access, writeFile } from 'node:fs/promises'
import { connect as tcpConnect, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { TEST_SECRET, connackCode, makeTempDir, sign } from '../helpers/broker.js'
import { spawnBroker, type ChildBroker } from '../helpers/child-broker.js'
import { within } from '../helpers/within.js'
import { eventually } from '../helpers/eventually.js'

// A broker under a low open-files limit (prlimit --nofile=256:256): it prints the
// limit at start with a warning, and once connections would exhaust it, it
// refuses new ones visibly: a warn line (rate-limited, with a count), a
// metric, and /readyz 503 while it refuses; all back to normal when
// connections close. Before, libuv closed them silently at EMFILE.

const LIMIT = 256

async function onPath (command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try {
      await access(join(dir, command), constants.X_OK)
      return true
    } catch {}
  }
  return false
}

const canLimit = process.platform === 'linux' && await onPath('prlimit')

t.test('running out of file descriptors is logged, counted and shown by /readyz; it passes when connections close', {
  skip: !canLimit && 'needs Linux and prlimit (util-linux)',
}, async (t) => {
  const dir = await makeTempDir(t)
  // the sockets below all come from 127.0.0.1 and send nothing: without this, limits.maxPendingConnectsPerIp
  // and limits.connectTimeoutMs would close them before the open-files limit is reached
  await writeFile(join(dir, 'herald.json'), JSON.stringify({ limits: { maxPendingConnectsPerIp: 0, connectTimeoutMs: 600_000 } }))
  const env = { HERALD_DATA_DIR: join(dir, 'data'), HERALD_JWT_SECRET: TEST_SECRET, HERALD_CONFIG: join(dir, 'herald.json') }
  const broker = await spawnBroker(t, env, { wrapper: ['prlimit', `--nofile=${LIMIT}:${LIMIT}`, '--'] })
  const http = `http://127.0.0.1:${broker.ports.http}`

  const start = await within(5000, 'the open-files line at start', broker.nextLog((line) => line.openFilesLimit !== undefined))
  t.equal(start.openFilesLimit, LIMIT, 'the limit is printed at start')
  t.equal(start.level, 40, 'with a warning: below what the configuration may need')
  const budget = start.connectionBudget as number
  t.ok(budget > 0 && budget < LIMIT, `connection budget ${budget}`)

  // more connections than the process has descriptors; none sends CONNECT, so each stays open
  const sockets = await Promise.all(Array.from({ length: LIMIT + 40 }, async () => await openSocket(broker)))
  t.teardown(() => { for (const socket of sockets) socket.destroy() })

  const refusal = await within(5000, 'the refusal log line', broker.nextLog((line) => typeof line.msg === 'string' && line.msg.startsWith('connections refused')))
  t.equal(refusal.level, 40, 'logged at warn')
  t.ok((refusal.refused as number) >= 1, `with a count (${String(refusal.refused)})`)
  t.equal(refusal.openFilesLimit, LIMIT)

  const ready = await fetch(`${http}/readyz`)
  t.equal(ready.status, 503, '/readyz fails while connections are refused')
  t.match(await ready.text(), /open-files limit/)
  t.equal((await fetch(`${http}/healthz`)).status, 200, '/healthz: the process answers')
  const metrics = await (await fetch(`${http}/metrics`)).text()
  const counted = /^herald_connections_refused_total\{listener="mqtt",reason="open_files"\} (\d+)$/m.exec(metrics)
  t.ok(Number(counted?.[1]) >= 1, `counted: ${counted?.[0] ?? 'no metric'}`)
  t.match(metrics, new RegExp(`^herald_open_files\\{kind="limit"\\} ${LIMIT}$`, 'm'))
  t.equal(refusals(broker), 1, 'one log line for the whole burst')

  // connections close: the broker takes new ones again
  for (const socket of sockets) socket.destroy()
  await eventually('/readyz answers 200', async () => (await fetch(`${http}/readyz`)).status === 200, 10_000, 50)
  t.pass('/readyz is 200 again')
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'after', password: sign({ sub: 'alice' }, { kid: null }) }), 0, 'an MQTT client connects')
})

/** A TCP connection to the broker's MQTT port, once it is established (or already closed by the broker). */
async function openSocket (broker: ChildBroker): Promise<Socket> {
  return await new Promise((resolve) => {
    const socket = tcpConnect(broker.ports.mqtt, '127.0.0.1')
    socket.on('error', () => {}) // a refused one is reset
    socket.once('connect', () => resolve(socket))
    socket.once('close', () => resolve(socket))
  })
}

function refusals (broker: ChildBroker): number {
  return broker.logs.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('connections refused')).length
}
