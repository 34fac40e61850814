import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { TEST_SECRET, connect, makeTempDir, sign, startBroker } from '../helpers/broker.js'
import { spawnBroker } from '../helpers/child-broker.js'
import { api } from '../helpers/http.js'
import { spyOnWrites, type ObservedWrite } from '../helpers/write-spy.js'

// storage.fsync: with `batch`, every write a PUBACK or a 2xx waits for reached
// LevelDB with sync (it was on the disk, not only in the page cache, when the
// acknowledgement went out); with `none`, none did. The writes are observed at
// the last step before classic-level's native binding.

const service = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })

for (const fsync of ['batch', 'none'] as const) {
  t.test(`storage.fsync ${fsync}: what PUBACKs and 2xx acknowledge was written ${fsync === 'batch' ? 'with' : 'without'} sync`, async (t) => {
    let writes: ObservedWrite[] = []
    const broker = await startBroker(t, {
      overrides: { storage: { fsync } },
      serverOptions: { onDatabaseOpen: (db) => { writes = spyOnWrites(db) } },
    })
    const synced = fsync === 'batch'
    /** The writes LevelDB had finished that wrote a key starting with `prefix`. */
    const finished = (prefix: string): ObservedWrite[] => writes.filter((w) => w.done && w.keys.some((key) => key.startsWith(prefix)))
    const check = (t: Test, what: string, prefix: string): void => {
      const done = finished(prefix)
      t.ok(done.length > 0, `${what}: written before the acknowledgement`)
      t.ok(done.every((w) => w.sync === synced), `${what}: ${synced ? 'with' : 'without'} sync`)
    }

    // an offline persistent subscriber: each QoS 1 message is its queue entry, written before the PUBACK
    const phone = await connect(t, broker.mqttUrl, { clientId: 'phone-1', clean: false, password: alice })
    await phone.subscribeAsync('users/alice/#', { qos: 1 })
    await phone.endAsync()
    const backend = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
    for (let i = 0; i < 5; i++) {
      const before = finished('!sessions!outgoing:phone-1:').length
      await backend.publishAsync('users/alice/news', `message ${i}`, { qos: 1 })
      const after = finished('!sessions!outgoing:phone-1:')
      t.ok(after.length > before, `PUBACK ${i}: its queue entry was written first`)
      t.ok(after.every((w) => w.sync === synced), `PUBACK ${i}: ${synced ? 'with' : 'without'} sync`)
    }

    // HTTP: each 2xx after the write it reports
    const topic = await api(broker, 'PUT', '/v1/topics/news', { token: admin, body: { acl: { subscribe: ['authenticated'], publish: ['role:service'] } } })
    t.equal(topic.status, 201, topic.text)
    check(t, 'app topic', '!app-topics!')

    const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken: { provider: 'fcm', token: 'fcm-token-1' } } })
    t.equal(created.status, 201, created.text)
    check(t, 'installation', '!installations!')
    check(t, 'push token index', '!push-tokens!')

    const object = await api(broker, 'PUT', '/v1/users/alice/buckets/notes/objects/n1', { token: alice, body: { text: 'hello' } })
    t.equal(object.status, 201, object.text)
    check(t, 'bucket object', '!bucket-objects!')

    const removed = await api(broker, 'DELETE', `/v1/installations/${created.body.installationId as string}`, { token: alice })
    t.equal(removed.status, 204, removed.text)

    await broker.stop()
    t.ok(writes.length > 10, `${writes.length} writes observed`)
    t.strictSame(writes.filter((w) => w.sync !== synced), [], synced ? 'not one write without sync' : 'not one write with sync')
  })
}

// The same seen from the kernel, when strace is installed: fdatasync/fsync calls of the broker
// process while it acknowledges QoS 1 messages for an offline session.
const strace = await which('strace')
t.test('strace: the broker syncs once per acknowledged batch with storage.fsync batch, never with none', {
  skip: strace === undefined && 'strace is not installed (apt-get install strace); the injected counter above covers the same ground',
}, async (t) => {
  if (strace === undefined) return
  for (const fsync of ['batch', 'none'] as const) {
    const broker = await spawnBroker(t, { HERALD_DATA_DIR: await makeTempDir(t), HERALD_JWT_SECRET: TEST_SECRET, HERALD_STORAGE_FSYNC: fsync })
    const token = (sub: string, role = 'device'): string => sign({ sub, role }, { kid: null })
    const phone = await connect(t, broker.mqttUrl, { clientId: 'phone-1', clean: false, password: token('alice') })
    await phone.subscribeAsync('users/alice/#', { qos: 1 })
    await phone.endAsync()
    const backend = await connect(t, broker.mqttUrl, { clientId: 'backend', password: token('backend', 'service') })

    const outFile = join(await makeTempDir(t), 'strace.txt')
    const tracer = spawn(strace, ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', outFile, '-p', String(broker.child.pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
    const traced = new Promise<number | null>((resolve) => tracer.once('exit', resolve))
    t.teardown(async () => {
      if (tracer.exitCode === null && tracer.signalCode === null) tracer.kill('SIGKILL')
      await traced
    })
    let traceErr = ''
    tracer.stderr.on('data', (chunk: Buffer) => { traceErr += chunk.toString() })
    // strace prints nothing once attached (-qq); a first sync-free round trip proves nothing, so
    // wait until it holds the process: its TracerPid in /proc
    if (!await attached(broker.child.pid!, traced)) {
      t.comment(`skipped: strace could not attach (${traceErr.trim() || 'no ptrace permission'})`)
      return
    }
    const MESSAGES = 20
    for (let i = 0; i < MESSAGES; i++) await backend.publishAsync('users/alice/news', `message ${i}`, { qos: 1 })
    tracer.kill('SIGINT')
    await traced
    const calls = (await readFile(outFile, 'utf8')).split('\n').filter((line) => /\b(fsync|fdatasync)\(/.test(line) && !line.includes('resumed'))
    if (fsync === 'batch') t.ok(calls.length >= MESSAGES, `batch: ${calls.length} syncs for ${MESSAGES} PUBACKs, each waited for`)
    else t.equal(calls.length, 0, 'none: no sync at all')
    await backend.endAsync()
    broker.child.kill('SIGTERM')
    await broker.exited
  }
})

async function which (command: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir, command)
    try {
      await access(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/** Resolves true once `pid` is being traced, false if the tracer exits first or 10 s pass. */
async function attached (pid: number, tracerExit: Promise<unknown>): Promise<boolean> {
  let exited = false
  void tracerExit.then(() => { exited = true })
  const deadline = Date.now() + 10_000
  // eslint-disable-next-line no-unmodified-loop-condition -- set by tracerExit, read after each await
  while (!exited && Date.now() < deadline) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    if (!/^TracerPid:\s+0$/m.test(status)) return true
    // /proc has no event to wait on
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return false
}
