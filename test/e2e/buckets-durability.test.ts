import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { BucketEvent } from '../../src/buckets/index.js'
import { TEST_SECRET, connect, makeTempDir, sign } from '../helpers/broker.js'
import { spawnBroker, type ChildBroker } from '../helpers/child-broker.js'

// kill -9 of the broker while bucket writes stream in, restart on the same
// data, several times over: every write that was acknowledged (HTTP 2xx) is
// stored, every stored write has its event (perhaps twice), and no event
// exists for a write that is not stored.
//
// Whether a kill lands between a write and its event is down to timing; with
// many writes in flight it often does, and three kills make it likely that at
// least one does (the replay itself is tested deterministically in
// test/buckets/level-store.test.ts).

// HERALD_JWT_SECRET configures one key without a kid
const alice = sign({ sub: 'alice' }, { kid: null })
const WORKERS = 24
const ROUNDS = 30
const KILL_AFTER = 100
const KILLS = 3
const OFFLINE_DEVICES = 20
const BUCKET = '/v1/users/alice/buckets/load/objects'
const EVENTS = 'users/alice/buckets/load/events'

interface Ack { readonly id: string, readonly version: number, readonly n: number }
interface Stored { readonly id: string, readonly version: number, readonly body: { n: number } }

t.test('acknowledged bucket writes and their events survive kill -9', async (t) => {
  const dataDir = await makeTempDir(t)
  const configFile = join(dataDir, 'herald.json')
  await writeFile(configFile, JSON.stringify({ buckets: { eventBodyLimitBytes: 64 } }))
  const env = { HERALD_DATA_DIR: dataDir, HERALD_JWT_SECRET: TEST_SECRET, HERALD_CONFIG: configFile }
  const mqttUrl = (broker: ChildBroker): string => `mqtt://127.0.0.1:${broker.ports.mqtt}`
  let broker = await spawnBroker(t, env)

  // a persistent subscriber collects events across every restart
  const events: BucketEvent[] = []
  const checks = new Set<() => void>()
  const onEvent = (_topic: string, payload: Buffer): void => {
    events.push(JSON.parse(payload.toString('utf8')) as BucketEvent)
    for (const check of [...checks]) check()
  }
  /** Resolves once `done()` holds, checked on every event. */
  const until = async (done: () => boolean): Promise<void> => {
    if (done()) return
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (!done()) return
        checks.delete(check)
        resolve()
      }
      checks.add(check)
    })
  }
  const watch = async (): Promise<void> => {
    const watcher = await connect(t, mqttUrl(broker), { clientId: 'watcher', clean: false, password: alice }, onEvent)
    watcher.on('error', () => {}) // the kill resets the connection
    await watcher.subscribeAsync(EVENTS, { qos: 1 })
  }
  await watch()
  // offline devices subscribed too: each event goes into their queues, which widens the
  // window between a write and its event that a kill has to hit
  for (let i = 0; i < OFFLINE_DEVICES; i++) {
    const device = await connect(t, mqttUrl(broker), { clientId: `offline-${i}`, clean: false, password: alice })
    await device.subscribeAsync(EVENTS, { qos: 1 })
    await device.endAsync()
  }

  const acks: Ack[] = []
  const request = async (method: string, path: string, body?: unknown): Promise<Response> => await fetch(`http://127.0.0.1:${broker.ports.http}${path}`, {
    method,
    headers: { authorization: `Bearer ${alice}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })

  for (let kill = 0; kill < KILLS; kill++) {
    // each worker replaces its own object and now and then creates a new one, until the broker dies
    let killed = false
    let acked = 0
    const write = async (method: string, path: string, body: Record<string, unknown>): Promise<Stored | undefined> => {
      try {
        const response = await request(method, path, body)
        if (response.status < 200 || response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
        return await response.json() as Stored
      } catch (err) {
        if (!killed) throw err
        return undefined // the broker is gone: not acknowledged
      }
    }
    const worker = async (w: number): Promise<void> => {
      for (let round = 0; round < ROUNDS; round++) {
        const n = kill * ROUNDS + round
        const result = round % 4 === 3
          ? await write('POST', `${BUCKET}?id=new-${w}-${n}`, { n, created: true })
          : await write('PUT', `${BUCKET}/obj-${w}`, { n, pad: 'x'.repeat(round) })
        if (result === undefined) return
        acks.push({ id: result.id, version: result.version, n })
        if (++acked === KILL_AFTER) {
          killed = true
          broker.child.kill('SIGKILL')
        }
      }
    }
    await Promise.all(Array.from({ length: WORKERS }, async (_, w) => await worker(w)))
    t.equal(await broker.exited, 'SIGKILL', `kill ${kill + 1} after ${acked} acknowledged writes`)
    t.ok(acked < WORKERS * ROUNDS, 'mid-stream')
    broker = await spawnBroker(t, env)
    await watch()
  }

  const stored = new Map<string, Stored>()
  let after: string | null = null
  do {
    const response = await request('GET', `${BUCKET}?limit=100${after === null ? '' : `&after=${after}`}`)
    const page = await response.json() as { objects: Stored[], next: string | null }
    for (const object of page.objects) stored.set(object.id, object)
    after = page.next
  } while (after !== null)

  // every acknowledged write is there (a later, unacknowledged one may have landed on top)
  const lost = acks.filter((ack) => {
    const object = stored.get(ack.id)
    return object === undefined || object.version < ack.version || (object.version === ack.version && object.body.n !== ack.n)
  })
  t.strictSame(lost, [], `none of the ${acks.length} acknowledged writes is lost`)

  // every stored version has its event; a marker written last shows the queue has come through
  const expected = new Set<string>()
  for (const [id, object] of stored) for (let v = 1; v <= object.version; v++) expected.add(`${id}@${v}`)
  const seen = (): Set<string> => new Set(events.map((e) => `${e.objectId ?? ''}@${e.version ?? ''}`))
  t.equal((await request('PUT', `${BUCKET}/marker`, {})).status, 201)
  const complete = (): boolean => {
    const have = seen()
    return have.has('marker@1') && [...expected].every((key) => have.has(key))
  }
  // bounded, so a missing event fails the test instead of hanging it; the wait normally ends far sooner
  await Promise.race([until(complete), new Promise((resolve) => setTimeout(resolve, 15_000).unref())])

  const have = seen()
  t.strictSame([...expected].filter((key) => !have.has(key)), [], `all ${expected.size} stored writes have their event`)
  t.strictSame([...have].filter((key) => !expected.has(key) && key !== 'marker@1'), [], 'no event for a write that is not stored')
  t.comment(`${events.length} events for ${have.size} writes (${events.length - have.size} repeated after a restart)`)
  const mislabelled = events.filter((e) => (e.type === 'DATA_OBJECT_CREATED') !== (e.version === 1) || e.type === 'DATA_OBJECT_DELETED')
  t.strictSame(mislabelled, [], 'version 1 is a creation, every later one an update')
})
