import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { startApnsProxy, type ApnsProxy } from '../helpers/apns-proxy.js'
import { connect, makeTempDir, sign } from '../helpers/broker.js'
import type { ChildBroker } from '../helpers/child-broker.js'
import { startCluster } from '../helpers/cluster.js'
import { apnsDeviceToken, fcmDeviceToken, startProviderFakes, type ProviderFakes } from '../helpers/providers.js'
import { eventually } from '../helpers/eventually.js'
import { within } from '../helpers/within.js'

// The relay of a cluster end to end (issue 16, "What it must show" 5 and 7):
// three `herald start` processes on one redis-server, Herald's real
// firebase-admin and node-apn talking to the local FCM and APNs fakes.

const service = sign({ sub: 'backend', role: 'service' })

interface Reply { readonly status: number, readonly body: any }

async function call (node: ChildBroker | undefined, method: string, path: string, token: string, body?: unknown): Promise<Reply> {
  if (node === undefined) throw new Error('no such node')
  const response = await fetch(`http://127.0.0.1:${node.ports.http}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
}

/** Registers an installation of `user` with a push token on `node`; resolves with its id (its MQTT client id). */
async function register (node: ChildBroker | undefined, user: string, pushToken: { provider: 'fcm' | 'apns', token: string }): Promise<string> {
  const created = await call(node, 'POST', '/v1/installations', sign({ sub: user }), { pushToken })
  if (created.status !== 201) throw new Error(`registration failed: ${JSON.stringify(created.body)}`)
  return created.body.installationId as string
}

/** A direct push to `user` through `node`; resolves with the message id. */
async function push (node: ChildBroker | undefined, user: string, title: string): Promise<string> {
  const accepted = await call(node, 'POST', '/v1/push', service, { to: { user }, notification: { title } })
  if (accepted.status !== 202) throw new Error(`push failed: ${JSON.stringify(accepted.body)}`)
  return accepted.body.id as string
}

/** A config file every node of a test can read (HERALD_CONFIG). */
async function configFile (t: Test, config: Record<string, unknown>): Promise<string> {
  const file = join(await makeTempDir(t, 'herald-config-'), 'herald.json')
  await writeFile(file, JSON.stringify(config))
  return file
}

/**
 * The cluster's relay outbox holds no job: everything enqueued was settled and
 * removed from the stream (relay-outbox.ts), so no node can send anything more.
 */
function outboxEmpty (redis: Redis): () => Promise<boolean> {
  return async () => await redis.xlen('e2e:relay:jobs') === 0 && await redis.hlen('e2e:relay:state') === 0
}

/** herald_relay_sent_total of one node, all providers. */
async function sentBy (node: ChildBroker): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)
  const text = await response.text()
  let sum = 0
  for (const match of text.matchAll(/^herald_relay_sent_total\{[^}]*\} (\d+)$/gm)) sum += Number(match[1])
  return sum
}

/** How many times each key was seen. */
function tally (keys: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>()
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1)
  return counts
}

/** Nodes still running, and the log lines at error level or above (pino: 50 error, 60 fatal) they wrote. */
function health (nodes: readonly ChildBroker[]): { alive: number, errors: unknown[] } {
  return {
    alive: nodes.filter((node) => node.child.exitCode === null && node.child.signalCode === null).length,
    errors: nodes.flatMap((node) => node.logs.filter((line) => typeof line.level === 'number' && line.level >= 50)),
  }
}

const fcmKey = (fakes: ProviderFakes): string[] => fakes.fcm.messages.map((m) => `${m.token} ${String((m.message.data as Record<string, unknown> | undefined)?.messageId)}`)
const apnsKey = (fakes: ProviderFakes): string[] => fakes.apns.requests.map((r) => `${r.token} ${String((r.json as Record<string, unknown> | undefined)?.messageId)}`)

t.test('item 5: N relay jobs made on three nodes are sent exactly once each, FCM and APNs', async (t) => {
  const fakes = await startProviderFakes(t)
  // a small concurrency makes every node take its share, as a busy cluster would
  const config = await configFile(t, { push: { ...fakes.push, concurrency: 16 } })
  const { redis, nodes } = await startCluster(t, { nodes: 3, env: { HERALD_CONFIG: config } })
  const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5']
  const perUser = 20
  const pushesPerUser = 4

  // installations registered on every node, half FCM, half APNs; none ever connects over MQTT
  const tokens = new Map<string, Array<{ provider: 'fcm' | 'apns', token: string }>>()
  let n = 0
  await Promise.all(users.map(async (user) => {
    const own = Array.from({ length: perUser }, (_, i) => i % 2 === 0
      ? { provider: 'fcm' as const, token: fcmDeviceToken() }
      : { provider: 'apns' as const, token: apnsDeviceToken() })
    tokens.set(user, own)
    await Promise.all(own.map(async (pushToken) => await register(nodes[n++ % 3], user, pushToken)))
  }))

  const started = Date.now()
  const pushes = await Promise.all(users.flatMap((user, u) => Array.from({ length: pushesPerUser }, async (_, p) => ({
    user, id: await push(nodes[(u + p) % 3], user, `push ${p} to ${user}`),
  }))))
  const jobs = users.length * perUser * pushesPerUser
  await within(30_000, 'every FCM message at the fake', fakes.fcm.waitForMessages(jobs / 2))
  await within(30_000, 'every APNs request at the fake', fakes.apns.waitForRequests(jobs / 2))
  await eventually('the outbox empty', outboxEmpty(redis.client()))
  const elapsed = Date.now() - started

  const expected = { fcm: [] as string[], apns: [] as string[] }
  for (const { user, id } of pushes) {
    for (const { provider, token } of tokens.get(user) ?? []) expected[provider].push(`${token} ${id}`)
  }
  const fcm = tally(fcmKey(fakes))
  const apns = tally(apnsKey(fakes))
  t.equal(fakes.fcm.messages.length, jobs / 2, `${jobs / 2} FCM sends`)
  t.equal(fakes.apns.requests.length, jobs / 2, `${jobs / 2} APNs sends`)
  t.same([...fcm.keys()].sort(), expected.fcm.sort(), 'FCM: each (token, message) of the pushes, nothing else')
  t.same([...apns.keys()].sort(), expected.apns.sort(), 'APNs: each (token, message) of the pushes, nothing else')
  t.same([...fcm.values(), ...apns.values()].filter((count) => count !== 1), [], 'each exactly once')
  t.same([...new Set([...fakes.fcm.messages.map((m) => m.status), ...fakes.apns.requests.map((r) => r.status)])], [200], 'every send accepted')

  const byNode = await Promise.all(nodes.map(sentBy))
  t.equal(byNode.reduce((a, b) => a + b, 0), jobs, 'the nodes count as many sends as the fakes saw')
  t.ok(byNode.filter((count) => count > 0).length >= 2, 'more than one node sent')
  t.same(health(nodes), { alive: 3, errors: [] }, 'no node crashed or logged an error')
  t.comment(`${jobs} jobs from ${pushes.length} pushes: ${fakes.fcm.messages.length + fakes.apns.requests.length} sends in ${elapsed} ms, by node ${byNode.join(' / ')}`)
})

t.test('item 5: after kill -9 of a node with sends in flight, its jobs are sent by the others, duplicates at most what it had in flight', async (t) => {
  const fakes = await startProviderFakes(t)
  const nodeTimeoutMs = 1500
  // each node reaches APNs through its own proxy, so its requests can be told apart and held
  const proxies = await Promise.all([0, 1, 2].map(async () => await startApnsProxy(t, fakes.apns.port)))
  const configs = await Promise.all(proxies.map(async (proxy) => await configFile(t, {
    push: { ...fakes.push, concurrency: 8, apns: { ...(fakes.push.apns as Record<string, unknown>), port: proxy.port } },
  })))
  const { redis, nodes } = await startCluster(t, { nodes: 3, nodeTimeoutMs, nodeEnv: (i) => ({ HERALD_CONFIG: configs[i] as string }) })
  const [victim, victimProxy] = [nodes[2] as ChildBroker, proxies[2] as ApnsProxy]
  const survivors = [proxies[0], proxies[1]] as ApnsProxy[]
  // APNs answers the victim's requests (the fake records them), the victim never hears it
  victimProxy.hold()

  const users = ['v0', 'v1', 'v2']
  const perUser = 30
  const all: string[] = []
  let n = 0
  await Promise.all(users.map(async (user) => {
    const own = Array.from({ length: perUser }, () => apnsDeviceToken())
    all.push(...own)
    await Promise.all(own.map(async (token) => await register(nodes[n++ % 3], user, { provider: 'apns', token })))
  }))
  const jobs = users.length * perUser
  await Promise.all(users.map(async (user, i) => await push(nodes[i % 3], user, `to ${user}`)))

  // every job sent once, and every request of the victim answered by the fake and held
  await within(20_000, 'every job at the fake once', fakes.apns.waitForRequests(jobs))
  // (and every answer to the survivors passed on, so that what they were not answered for is the victim's)
  const settled = (): boolean => victimProxy.held === victimProxy.open && survivors.every((proxy) => proxy.open === 0)
  await within(5000, 'the victim\'s answers held, the others\' passed on', Promise.race(proxies.map(async (proxy) => await proxy.until(settled))))
  const inFlight = victimProxy.open
  const sentBefore = fakes.apns.requests.length
  const heldTokens = all.filter((token) => !survivors.some((proxy) => proxy.delivered.has(token)))
  t.equal(sentBefore, jobs, 'nothing sent twice before the kill')
  t.ok(inFlight > 0, `the victim has ${inFlight} sends in flight at the fake`)
  t.equal(heldTokens.length, inFlight, 'the tokens the survivors were not answered for are the victim\'s in flight')

  const killedAt = Date.now()
  victim.child.kill('SIGKILL')
  t.equal(await victim.exited, 'SIGKILL')
  const everyTokenAnswered = (): boolean => all.every((token) => survivors.some((proxy) => proxy.delivered.has(token)))
  await within(nodeTimeoutMs * 4, 'the victim\'s jobs sent by the survivors', Promise.race(survivors.map(async (proxy) => await proxy.until(everyTokenAnswered))))
  const takeoverMs = Date.now() - killedAt
  // a node refreshes its jobs every third of the timeout: the others may take them 2/3 of it after the last refresh, not sooner
  t.ok(takeoverMs >= nodeTimeoutMs * 2 / 3 - 100, `taken over ${takeoverMs} ms after the kill: not before the victim's lease could run out`)
  await eventually('the outbox empty', outboxEmpty(redis.client()))

  const counts = tally(fakes.apns.requests.map((r) => r.token))
  const twice = [...counts].filter(([, count]) => count > 1).map(([token]) => token)
  const duplicates = fakes.apns.requests.length - jobs
  t.same(all.filter((token) => !counts.has(token)), [], 'none lost: every token reached APNs')
  t.same(fakes.apns.requests.filter((r) => r.status !== 200), [], 'every request accepted')
  t.ok(duplicates <= inFlight, `duplicates (${duplicates}) at most what the victim had in flight (${inFlight})`)
  t.same(twice.filter((token) => !heldTokens.includes(token)), [], 'only tokens the victim had in flight were sent again')
  t.same([...counts.values()].filter((count) => count > 2), [], 'none sent more than twice')
  t.same(survivors.flatMap((proxy) => proxy.errors), [], 'no proxy failure')
  t.same(health(nodes.slice(0, 2)), { alive: 2, errors: [] }, 'the survivors run on without error')
  t.comment(`${jobs} jobs; victim had ${inFlight} in flight; ${fakes.apns.requests.length} sends, ${duplicates} duplicates; taken over and sent ${takeoverMs} ms after the kill (nodeTimeoutMs ${nodeTimeoutMs})`)
})

t.test('item 7: a direct push reaches a device connected to another node over MQTT, not FCM; offline, through FCM', async (t) => {
  const fakes = await startProviderFakes(t)
  const config = await configFile(t, { push: fakes.push })
  const { redis, nodes: [a, b, c] } = await startCluster(t, { nodes: 3, env: { HERALD_CONFIG: config } })
  const ivy = sign({ sub: 'ivy' })
  const phoneToken = fcmDeviceToken()
  const tabletToken = fcmDeviceToken()
  const phone = await register(c, 'ivy', { provider: 'fcm', token: phoneToken })
  await register(c, 'ivy', { provider: 'fcm', token: tabletToken }) // the tablet: never connected
  /** what node A, where the pushes are made, believes of the phone */
  const connectedOnA = async (): Promise<boolean> => (await call(a, 'GET', `/v1/installations/${phone}`, ivy)).body.connected as boolean
  /** a wait for node A's view, failing with what Redis holds */
  const aSees = async (what: string, connected: boolean): Promise<void> => {
    await eventually(what, async () => await connectedOnA() === connected).catch(async (err: Error) => {
      throw new Error(`${err.message}; presence in Redis: ${JSON.stringify(await redis.client().hgetall('e2e:presence'))}`)
    })
  }

  // the phone on node B, as its installation: client id = installation id, persistent session, its owner's token
  const overMqtt: string[] = []
  const arrived: Array<() => void> = []
  const device = await connect(t, `mqtt://127.0.0.1:${String(b?.ports.mqtt)}`, { clientId: phone, clean: false, username: 'ivy', password: ivy }, (_topic, payload) => {
    overMqtt.push((JSON.parse(payload.toString()) as { id: string }).id)
    arrived.shift()?.()
  })
  await aSees('node A sees the phone connected', true)

  // one push to both devices: the tablet (offline) through FCM, the phone (on B) over MQTT only
  const gotFirst = new Promise<void>((resolve) => arrived.push(resolve))
  const first = await push(a, 'ivy', 'first')
  await within(5000, 'the phone gets the first push over MQTT', gotFirst)
  await within(10_000, 'the tablet\'s copy at FCM', fakes.fcm.waitForMessages(1))
  // both jobs would have been written by that one push: with the outbox empty, none is left to come
  await eventually('the outbox empty', outboxEmpty(redis.client()))
  t.same(overMqtt, [first], 'the phone got the push over MQTT')
  t.same(fcmKey(fakes), [`${tabletToken} ${first}`], 'FCM got the tablet\'s copy only, nothing for the connected phone')
  t.equal(fakes.apns.requests.length, 0)

  // the reverse: the phone goes offline; the same push from node A now goes to it through FCM
  await device.endAsync()
  await aSees('node A sees the phone gone', false)
  const second = await push(a, 'ivy', 'second')
  await within(10_000, 'both copies of the second push at FCM', fakes.fcm.waitForMessages(3))
  await eventually('the outbox empty', outboxEmpty(redis.client()))
  t.same(fcmKey(fakes).sort(), [`${tabletToken} ${first}`, `${phoneToken} ${second}`, `${tabletToken} ${second}`].sort(), 'the offline phone got the second push through FCM, once')
  t.same(overMqtt, [first], 'and nothing more over MQTT')
  t.same(health([a, b, c] as ChildBroker[]), { alive: 3, errors: [] })
})

t.test('issue 17: an installation owner\'s newer token, seen at a CONNECT on another node, decides the relay', async (t) => {
  // nodes keep the known principals of installation owners only, and learn who owns one from the claims' mirror
  const fakes = await startProviderFakes(t)
  const config = await configFile(t, { push: fakes.push })
  const { redis, nodes: [a, b] } = await startCluster(t, { nodes: 2, env: { HERALD_CONFIG: config } })
  const url = (node: ChildBroker | undefined): string => `mqtt://127.0.0.1:${String(node?.ports.mqtt)}`
  const aliceInOps = sign({ sub: 'alice', groups: ['ops'], iat: Math.floor(Date.now() / 1000) - 600 })
  const created = await call(a, 'POST', '/v1/installations', aliceInOps, { pushToken: { provider: 'fcm', token: fcmDeviceToken() } })
  t.equal(created.status, 201)
  const phone = created.body.installationId as string
  const device = await connect(t, url(a), { clientId: phone, clean: false, username: 'alice', password: aliceInOps })
  t.same((await device.subscribeAsync(['groups/ops/#', 'users/alice/#'], { qos: 1 })).map((g) => g.qos), [1, 1], 'granted while in ops')
  await device.endAsync()

  // a claim node B refuses on is in its mirror when the refusal comes (store/redis/client-owners.ts `claim`)
  const bob = await connect(t, url(b), { clientId: phone, clean: false, username: 'bob', password: sign({ sub: 'bob' }) }).then(() => 0, (err: { code?: unknown }) => err.code)
  t.equal(bob, 5, 'node B knows the phone\'s id is alice\'s installation')
  // her laptop (no installation) on node B, with her token of now: out of ops
  const laptop = await connect(t, url(b), { clientId: 'alice-laptop', clean: true, username: 'alice', password: sign({ sub: 'alice' }) })
  await laptop.endAsync()
  await eventually('node B\'s record of alice in Redis', async () => !(await redis.client().hget('e2e:known-principals', 'alice') ?? 'ops').includes('ops'))

  const carol = sign({ sub: 'carol', groups: ['ops'] })
  t.equal((await call(a, 'POST', '/v1/publish', carol, { topic: 'groups/ops/alerts', payload: 'ops only', qos: 1 })).status, 202)
  t.equal((await call(a, 'POST', '/v1/publish', service, { topic: 'users/alice/news', payload: 'hers', qos: 1 })).status, 202)
  await within(10_000, 'her news at FCM', fakes.fcm.waitForMessages(1))
  await eventually('the outbox empty', outboxEmpty(redis.client()))
  t.strictSame(fakes.fcm.messages.map((m) => (m.message.data as Record<string, string>).topic), ['users/alice/news'], 'nothing of ops: node A decided by the token node B saw')
  t.same(health([a, b] as ChildBroker[]), { alive: 2, errors: [] })
})
