/**
 * The operator commands as an operator runs them: bin/herald.js (the built
 * dist/) against a running broker's HTTP API with an admin token from
 * $HERALD_TOKEN or --token.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { brokerEvent, connect, nextMessage, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { apnsDeviceToken, startProviderFakes } from '../helpers/providers.js'

const heraldBin = fileURLToPath(new URL('../../bin/herald.js', import.meta.url))
const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })

interface Run { code: number, stdout: string, stderr: string }

/** `herald <args>` with only PATH and the given variables in its environment. */
async function herald (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [heraldBin, ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

/** The admin token and URL as an operator sets them once per shell. */
const envFor = (broker: TestBroker, token = admin): Record<string, string> => ({ HERALD_TOKEN: token, HERALD_URL: `http://127.0.0.1:${broker.ports.http}` })

t.test('clients, queue and disconnect', async (t) => {
  const broker = await startBroker(t)
  const env = envFor(broker)
  const phone = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: alice })
  await phone.subscribeAsync('users/alice/news', { qos: 1 })
  await connect(t, broker.mqttUrl, { clientId: 'bob-phone', password: bob })

  const listed = await herald(['clients'], env)
  t.equal(listed.code, 0, listed.stderr)
  t.match(listed.stdout, /^CLIENT ID +USER +NODE +TRANSPORT +ADDRESS +CONNECTED AT\nalice-phone +alice +- +tcp +127\.0\.0\.1 +\d{4}-/)
  t.match(listed.stdout, /\nbob-phone +bob /)
  t.match(listed.stdout, /2 of 2 connected\n$/)
  const alices = await herald(['clients', '--user', 'alice', '--json'], env)
  t.same(JSON.parse(alices.stdout).clients.map((c: { clientId: string }) => c.clientId), ['alice-phone'])

  const queue = await herald(['queue', 'alice-phone'], env)
  t.equal(queue.code, 0, queue.stderr)
  t.match(queue.stdout, /^alice-phone: 0 queued message\(s\); connected from 127\.0\.0\.1 since /)
  t.match(queue.stdout, /subscriptions \(1\):\n {2}users\/alice\/news \(QoS 1\)/)

  const gone = brokerEvent(broker, 'clientDisconnect', 'alice-phone')
  const kicked = await herald(['disconnect', 'alice-phone'], env)
  t.same([kicked.code, kicked.stdout], [0, 'disconnected alice-phone\n'])
  await gone
  const again = await herald(['disconnect', 'alice-phone'], env)
  t.equal(again.code, 1, 'not connected any more')
  t.match(again.stderr, /^herald: 404 NOT_FOUND: the client id is not connected\n$/)

  const published = await api(broker, 'POST', '/v1/publish', { token: sign({ sub: 'backend', role: 'service' }), body: { topic: 'users/alice/news', payload: 'x', qos: 1 } })
  t.equal(published.status, 202)
  t.match((await herald(['queue', 'alice-phone'], env)).stdout, /^alice-phone: 1 queued message\(s\); offline\n/)
  t.equal((await herald(['queue', 'nobody'], env)).code, 1)
})

t.test('the token comes from --token or $HERALD_TOKEN, must be an admin\'s, and is never printed', async (t) => {
  const broker = await startBroker(t)
  const url = `http://127.0.0.1:${broker.ports.http}`
  const missing = await herald(['clients', '--url', url])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /--token <jwt> or \$HERALD_TOKEN/)
  const flag = await herald(['clients', '--url', url, '--token', admin])
  t.equal(flag.code, 0, flag.stderr)
  const device = await herald(['clients'], envFor(broker, alice))
  t.equal(device.code, 1)
  t.match(device.stderr, /403 NOT_AUTHORIZED/)
  const unreachable = await herald(['clients', '--url', 'http://127.0.0.1:1'], { HERALD_TOKEN: admin })
  t.equal(unreachable.code, 1)
  t.match(unreachable.stderr, /^herald: cannot reach the broker at http:\/\/127\.0\.0\.1:1/)
  for (const run of [missing, flag, device, unreachable]) t.notOk(`${run.stdout}${run.stderr}`.includes(admin) || `${run.stdout}${run.stderr}`.includes(alice), 'no token in the output')
  const usage = await herald(['dead-letters', 'replay'], envFor(broker))
  t.equal(usage.code, 2)
  t.match(usage.stderr, /replay takes one <id> or --all\nUsage: herald dead-letters/)
  const help = await herald(['push', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /--installation <id>/)
})

t.test('a test push reaches a connected device', async (t) => {
  const broker = await startBroker(t)
  const device = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  await device.subscribeAsync('users/alice/inbox', { qos: 1 })
  const arrived = nextMessage(device, 'users/alice/inbox')
  const pushed = await herald(['push', '--user', 'alice', '--title', 'Hi', '--data', '{"k":"v"}'], envFor(broker))
  t.equal(pushed.code, 0, pushed.stderr)
  const [, id] = /^pushed (\S+) to user alice\n$/.exec(pushed.stdout) ?? []
  const envelope = JSON.parse((await arrived).payload.toString())
  t.match(envelope, { id, sender: 'root', notification: { title: 'Hi' }, data: { k: 'v' } })
  const refused = await herald(['push', '--user', 'alice', '--topic', 'x'], envFor(broker))
  t.equal(refused.code, 2, 'one target')
})

t.test('dead letters: list, show, replay one, purge all', async (t: Test) => {
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: { ...fakes.push, maxAttempts: 1 } } })
  const env = envFor(broker)
  const token = apnsDeviceToken()
  t.equal((await api(broker, 'POST', '/v1/installations', { token: alice, body: { mqtt: false, pushToken: { provider: 'apns', token } } })).status, 201)
  fakes.apns.respond(token, { status: 503, reason: 'ServiceUnavailable', times: 2 })
  for (const n of ['1', '2']) await api(broker, 'POST', '/v1/push', { token: admin, body: { to: { user: 'alice' }, data: { n } } })
  await broker.server.relay?.drain()

  const listed = await herald(['dead-letters', 'list'], env)
  t.equal(listed.code, 0, listed.stderr)
  t.match(listed.stdout, /^ID +INSTALLATION +DEAD AT +ATTEMPTS +TOPIC +REASON\n/)
  t.match(listed.stdout, /2 of 2 dead letters\n$/)
  const ids = (JSON.parse((await herald(['dead-letters', 'list', '--json'], env)).stdout).deadLetters as Array<{ id: string }>).map((l) => l.id)
  t.equal(ids.length, 2)
  const shown = await herald(['dead-letters', 'show', ids[0] as string], env)
  t.match(JSON.parse(shown.stdout), { id: ids[0], reason: /ServiceUnavailable/, content: { kind: 'push', data: {} } })

  const replayed = await herald(['dead-letters', 'replay', ids[0] as string], env)
  t.same([replayed.code, replayed.stdout], [0, 'replayed 1 dead letter(s)\n'])
  await fakes.apns.waitForRequests(3)
  await broker.server.relay?.drain()
  t.equal(fakes.apns.requests[2]?.status, 200, 'the replay reached APNs')
  const purged = await herald(['dead-letters', 'purge', '--all'], env)
  t.same([purged.code, purged.stdout], [0, 'purged 1 dead letter(s)\n'])
  t.match((await herald(['dead-letters', 'list'], env)).stdout, /0 of 0 dead letters\n$/)
})
