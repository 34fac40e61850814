/**
 * An online backup of a running broker (`herald backup`, POST
 * /v1/admin/backup) restored into a new data directory (`herald restore`):
 * the broker started on it has every session, queued message, installation,
 * client id claim, app topic and bucket object of the moment of the backup,
 * and nothing written after it.
 */
import { execFile } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { brokerEvent, connackCode, connect, makeTempDir, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { readBackupManifest } from '../../src/store/backup.js'

const heraldBin = fileURLToPath(new URL('../../bin/herald.js', import.meta.url))
const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })

async function herald (args: string[], env: Record<string, string> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [heraldBin, ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

async function ok (broker: TestBroker, method: string, path: string, token: string, body?: unknown): Promise<any> {
  const response = await api(broker, method, path, { token, ...(body !== undefined && { body }) })
  if (response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${response.text}`)
  return response.body
}

/** What a broker holds, read through the API, for comparing two brokers. */
async function contents (broker: TestBroker, ids: { phone: string, tablet: string, bobs: string }): Promise<unknown> {
  const installations = async (token: string): Promise<unknown> => ((await ok(broker, 'GET', '/v1/installations', token)).installations as Array<Record<string, unknown>>)
    .map(({ id, pushToken, mqtt, createdAt }) => ({ id, pushToken, mqtt, createdAt })).sort((a, b) => String(a.id) < String(b.id) ? -1 : 1)
  const session = async (clientId: string): Promise<unknown> => {
    const { owner, installation, session } = await ok(broker, 'GET', `/v1/admin/clients/${encodeURIComponent(clientId)}`, admin)
    return { owner, installation, session }
  }
  return {
    alice: await installations(alice),
    bob: await installations(bob),
    sessions: {
      phone: await session(ids.phone),
      tablet: await session(ids.tablet),
      bobs: await session(ids.bobs),
      plain: await session('alice-laptop'),
    },
    topics: (await ok(broker, 'GET', '/v1/topics', admin)).topics,
    notes: (await ok(broker, 'GET', '/v1/users/alice/buckets/notes/objects', alice)).objects,
  }
}

t.test('a backup taken while the broker runs, restored into a new data dir, brings every session and installation back', async (t) => {
  const first = await startBroker(t)
  const env = { HERALD_TOKEN: admin, HERALD_URL: `http://127.0.0.1:${first.ports.http}` }

  // installations (one with a queued message for an offline device), a plain persistent session, an app topic, a bucket object
  const phone = (await ok(first, 'POST', '/v1/installations', alice, { pushToken: { provider: 'fcm', token: 'fcm-token-0123456789abcdef' } })).installationId as string
  const tablet = (await ok(first, 'POST', '/v1/installations', alice, { mqtt: false, pushToken: { provider: 'apns', token: 'a'.repeat(64), environment: 'development' } })).installationId as string
  const bobs = (await ok(first, 'POST', '/v1/installations', bob, {})).installationId as string
  await ok(first, 'PUT', `/v1/installations/${phone}/subscriptions/users%2Falice%2Fnews`, alice)
  const laptop = await connect(t, first.mqttUrl, { clientId: 'alice-laptop', clean: false, password: alice })
  await laptop.subscribeAsync('users/alice/news', { qos: 1 })
  const left = brokerEvent(first, 'clientDisconnect', 'alice-laptop')
  await laptop.endAsync()
  await left
  await ok(first, 'POST', '/v1/publish', service, { topic: 'users/alice/news', payload: 'queued before the backup', qos: 1 })
  await ok(first, 'PUT', '/v1/topics/news', admin, {})
  await ok(first, 'PUT', '/v1/users/alice/buckets/notes/objects/groceries', alice, { items: ['milk'] })
  const ids = { phone, tablet, bobs }
  const before = await contents(first, ids)

  const dir = join(await makeTempDir(t), 'backup')
  const backup = await herald(['backup', dir], env)
  t.equal(backup.code, 0, backup.stderr)
  t.match(backup.stdout, new RegExp(`^backed up \\d+ entries \\(\\d+ bytes\\) into ${dir} in \\d+ ms\\n$`))
  t.match(await readBackupManifest(dir), { format: 1, dir, entries: Number(/backed up (\d+)/.exec(backup.stdout)?.[1]) })
  t.equal((await stat(dir)).mode & 0o777, 0o700, 'the backup is readable by the broker\'s user only')

  // written after the backup: not in it
  await ok(first, 'POST', '/v1/installations', alice, {})
  await ok(first, 'POST', '/v1/publish', service, { topic: 'users/alice/news', payload: 'after the backup', qos: 1 })
  const again = await herald(['backup', dir], env)
  t.equal(again.code, 1, 'a backup never goes into a directory that is not empty')
  t.match(again.stderr, /409 ALREADY_EXISTS/)

  const dataDir = join(await makeTempDir(t), 'restored')
  const restored = await herald(['restore', dir, dataDir])
  t.equal(restored.code, 0, restored.stderr)
  t.match(restored.stdout, /^restored \d+ entries/)
  t.equal((await herald(['restore', dir, dataDir])).code, 1, 'restore never overwrites a store')
  t.equal((await herald(['restore', first.dataDir, join(dataDir, 'x')])).code, 1, 'a data directory is not a complete backup')

  const second = await startBroker(t, { dataDir })
  t.same(await contents(second, ids), before, 'the same installations, sessions, topics and objects')
  t.equal(((await ok(second, 'GET', '/v1/installations', alice)).installations as unknown[]).length, 2, 'the installation made after the backup is not there')
  t.equal(await connackCode(second.mqttUrl, { clientId: phone, clean: false, password: bob }), 5, 'client id claims came back: bob cannot take alice\'s installation id')

  const received: string[] = []
  const delivered = new Promise<void>((resolve) => {
    void connect(t, second.mqttUrl, { clientId: 'alice-laptop', clean: false, password: alice }, (_topic, payload) => {
      received.push(payload.toString())
      resolve()
    })
  })
  await delivered
  t.same(received, ['queued before the backup'], 'the queued message is delivered from the restored session')
})

t.test('a backup goes only into an absolute path outside the live database', async (t) => {
  const broker = await startBroker(t)
  const relative = await api(broker, 'POST', '/v1/admin/backup', { token: admin, body: { dir: 'backups/today' } })
  t.same([relative.status, relative.body.error.code], [400, 'INVALID_REQUEST'])
  const inside = await api(broker, 'POST', '/v1/admin/backup', { token: admin, body: { dir: join(broker.dataDir, 'db', 'backup') } })
  t.same([inside.status, inside.body.error.code], [400, 'INVALID_REQUEST'])
  const occupied = await api(broker, 'POST', '/v1/admin/backup', { token: admin, body: { dir: broker.dataDir } })
  t.same([occupied.status, occupied.body.error.code], [409, 'ALREADY_EXISTS'])
})
