import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, rmdir, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { api, type ApiResponse } from '../helpers/http.js'
import { within } from '../helpers/within.js'
import { eventually } from '../helpers/eventually.js'

// The data directory on a small tmpfs, filled up: writes are refused with
// STORAGE_FULL (HTTP 503 with Retry-After; a QoS 1 PUBLISH that cannot be
// stored gets no PUBACK), /readyz answers 503, and once space is freed the
// broker writes again by itself, without a restart. Needs root (mount);
// skipped otherwise.

const run = promisify(execFile)
const TMPFS_BYTES = 16 * 1024 * 1024

const alice = sign({ sub: 'alice' })
const service = sign({ sub: 'backend', role: 'service' })
const OBJECTS = '/v1/users/alice/buckets/notes/objects'

/** Mounts a tmpfs of `bytes` on a new directory; resolves its path, or why it cannot. */
async function mountTmpfs (bytes: number): Promise<{ dir: string } | { reason: string }> {
  if (process.getuid?.() !== 0) return { reason: 'needs root to mount a tmpfs (run the tests as root to include it)' }
  const dir = await mkdtemp(join(tmpdir(), 'herald-full-'))
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir])
    // a test killed on timeout runs no teardown: leave no mount behind
    const unmount = (): void => { try { execFileSync('umount', ['-l', dir], { stdio: 'ignore' }) } catch {} }
    process.once('exit', unmount)
    process.once('SIGTERM', () => { unmount(); process.exit(1) })
    return { dir }
  } catch (err) {
    await rmdir(dir)
    return { reason: `mount -t tmpfs failed: ${(err as Error).message.split('\n')[0] ?? ''}` }
  }
}

const mounted = await mountTmpfs(TMPFS_BYTES)

t.test('a full disk is reported (STORAGE_FULL, /readyz 503) and heals without a restart once space is freed', {
  skip: 'reason' in mounted && mounted.reason,
}, async (t) => {
  if (!('dir' in mounted)) return
  const dir = mounted.dir
  const broker = await startBroker(t, { dataDir: join(dir, 'data'), captureLogs: true })
  // the broker stops before the tmpfs goes away
  t.teardown(async () => {
    await broker.stop()
    await run('umount', [dir])
    await rmdir(dir)
  })

  // a persistent subscriber goes offline: every QoS 1 message for it must be written before its PUBACK
  const phone = await connect(t, broker.mqttUrl, { clientId: 'phone-1', clean: false, password: alice })
  await phone.subscribeAsync('users/alice/#', { qos: 1 })
  await phone.endAsync()
  const first = await api(broker, 'PUT', `${OBJECTS}/first`, { token: alice, body: { text: 'before the disk filled up' } })
  t.equal(first.status, 201, first.text)

  // Fill the tmpfs but for 6 MB, then write incompressible bucket objects until a write is refused.
  // LevelDB's log reaches its 4 MB memtable first, and the table it is then compacted into does not
  // fit: the failed compaction leaves LevelDB refusing every write until it is reopened, the state
  // in which freeing space alone did not help (issue 14).
  const free = async (): Promise<number> => { const fs = await statfs(dir); return fs.bavail * fs.bsize }
  const filler = join(dir, 'filler')
  await writeFile(filler, Buffer.alloc(Math.max(0, await free() - 6 * 1024 * 1024)))
  let refused: ApiResponse | undefined
  for (let i = 0; i < 300 && refused === undefined; i++) {
    const put = await api(broker, 'PUT', `${OBJECTS}/n${i}`, { token: alice, body: { text: randomBytes(36 * 1024).toString('base64') } })
    if (put.status !== 201) refused = put
  }
  t.ok(refused !== undefined, 'a bucket write was refused')
  t.equal(refused?.status, 503, 'HTTP 503, not 500')
  t.equal(refused?.body?.error?.code, 'STORAGE_FULL')
  t.ok(Number(refused?.headers.get('retry-after')) > 0, 'with Retry-After')

  const notReady = await api(broker, 'GET', '/readyz')
  t.equal(notReady.status, 503, '/readyz fails while the store cannot write')
  t.equal(notReady.body?.error?.code, 'STORAGE_FULL')
  t.equal((await api(broker, 'GET', '/healthz')).status, 200, '/healthz: the process still answers')
  t.match((await api(broker, 'GET', '/metrics')).text, /^herald_storage_writable 0$/m)
  t.equal((await api(broker, 'GET', `${OBJECTS}/first`, { token: alice })).status, 200, 'reads go on')
  t.ok(broker.logs.some((line) => line.level === 50 && line.code === 'STORAGE_FULL'), 'logged as an error')

  // MQTT: a clean session still connects (it needs no write); a QoS 1 message that cannot be stored
  // gets no PUBACK, the connection is closed instead
  const backend = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  const pubacks: number[] = []
  backend.on('packetreceive', (packet) => { if (packet.cmd === 'puback') pubacks.push(packet.messageId ?? 0) })
  const closed = new Promise<void>((resolve) => backend.once('close', () => resolve()))
  backend.publish('users/alice/news', 'lost to the full disk', { qos: 1 }, () => {})
  await closed
  t.strictSame(pubacks, [], 'no PUBACK for a message that was not stored')

  // space comes back: the broker heals by itself
  await rm(filler)
  await eventually('/readyz answers 200', async () => (await api(broker, 'GET', '/readyz')).status === 200, 20_000, 50)
  t.pass('/readyz is 200 again without a restart')
  t.ok(broker.logs.some((line) => line.msg === 'the store writes again'), 'logged')
  t.match((await api(broker, 'GET', '/metrics')).text, /^herald_storage_writable 1$/m)

  const again = await api(broker, 'PUT', `${OBJECTS}/after`, { token: alice, body: { text: 'after space was freed' } })
  t.equal(again.status, 201, again.text)
  t.equal((await api(broker, 'GET', `${OBJECTS}/first`, { token: alice })).body?.body?.text, 'before the disk filled up', 'what was written before is intact')

  const publisher: MqttClient = await connect(t, broker.mqttUrl, { clientId: 'backend-2', password: service })
  await within(10_000, 'the PUBACK after healing', publisher.publishAsync('users/alice/news', 'stored again', { qos: 1 }))
  t.pass('a QoS 1 message is PUBACKed again')
  const received: string[] = []
  const back = await connect(t, broker.mqttUrl, { clientId: 'phone-1', clean: false, password: alice }, (_topic, payload) => { received.push(payload.toString()) })
  await eventually('the message stored after the heal arrives', async () => received.includes('stored again'), 20_000, 50)
  t.notOk(received.includes('lost to the full disk'), 'the refused message was never acknowledged, nor queued')
  await back.endAsync()
})
