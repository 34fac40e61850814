/**
 * Relay dead letters through the admin API, with Herald's real firebase-admin
 * and @parse/node-apn against the local FCM and APNs fakes: jobs that ran out
 * of attempts are listed and inspected, a replay delivers them to the
 * provider, a purge drops them unsent.
 */
import t, { type Test } from 'tap'
import { sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { apnsDeviceToken, fcmDeviceToken, startProviderFakes, type ProviderFakes } from '../helpers/providers.js'

const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })
const backend = sign({ sub: 'backend', role: 'service' })

async function rig (t: Test): Promise<{ broker: TestBroker, fakes: ProviderFakes }> {
  const fakes = await startProviderFakes(t)
  // two attempts, then the dead letters
  const broker = await startBroker(t, { overrides: { push: { ...fakes.push, maxAttempts: 2 } } })
  return { broker, fakes }
}

async function register (broker: TestBroker, pushToken: Record<string, unknown>): Promise<string> {
  const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken, mqtt: false } })
  if (created.status !== 201) throw new Error(`registration failed: ${created.text}`)
  return created.body.installationId as string
}

async function deadLetters (broker: TestBroker): Promise<Array<Record<string, any>>> {
  const listed = await api(broker, 'GET', '/v1/admin/dead-letters', { token: admin })
  if (listed.status !== 200) throw new Error(listed.text)
  return listed.body.deadLetters
}

t.test('a dead letter is listed with the provider\'s reason, and a replay delivers it to the provider', async (t) => {
  const { broker, fakes } = await rig(t)
  const apnsToken = apnsDeviceToken()
  const fcmToken = fcmDeviceToken()
  const apnsInstallation = await register(broker, { provider: 'apns', token: apnsToken })
  const fcmInstallation = await register(broker, { provider: 'fcm', token: fcmToken })
  fakes.apns.respond(apnsToken, { status: 503, reason: 'ServiceUnavailable', times: 2 })
  // INTERNAL (500), not UNAVAILABLE: firebase-admin retries a 503 itself, with seconds of backoff
  fakes.fcm.script(fcmToken, 'INTERNAL', 2)

  const pushed = await api(broker, 'POST', '/v1/push', { token: backend, body: { to: { user: 'alice' }, notification: { title: 'Hello', body: 'again' }, data: { order: '42' } } })
  t.equal(pushed.status, 202)
  const messageId = pushed.body.id as string
  await broker.server.relay?.drain()
  t.same(fakes.apns.requests.map((r) => r.status), [503, 503], 'APNs refused both attempts')
  t.same(fakes.fcm.messages.map((m) => m.status), [500, 500], 'FCM failed both attempts')

  const letters = await deadLetters(broker)
  t.equal(letters.length, 2)
  const apnsLetter = letters.find((l) => l.installationId === apnsInstallation)
  const fcmLetter = letters.find((l) => l.installationId === fcmInstallation)
  t.match(apnsLetter, { attempts: 2, messageId, topic: 'users/alice/inbox', reason: /ServiceUnavailable/ })
  t.match(fcmLetter, { attempts: 2, messageId })
  const inspected = await api(broker, 'GET', `/v1/admin/dead-letters/${apnsLetter?.id as string}`, { token: admin })
  t.match(inspected.body, { id: apnsLetter?.id, content: { kind: 'push', messageId, notification: { title: 'Hello', body: 'again' }, data: { order: '42' } } }, 'what it would send')
  t.notOk(inspected.text.includes(apnsToken), 'never the push token')
  t.match((await api(broker, 'GET', '/metrics')).text, /\nherald_relay_dead_letters 2\n/)

  // APNs answers 200 from now on: the replay is sent once, as the original push
  const replayed = await api(broker, 'POST', `/v1/admin/dead-letters/${apnsLetter?.id as string}/replay`, { token: admin })
  t.same([replayed.status, replayed.body], [202, { replayed: 1 }])
  const [, , third] = await fakes.apns.waitForRequests(3)
  await broker.server.relay?.drain()
  t.equal(third?.status, 200, 'delivered')
  t.equal(third?.token, apnsToken)
  t.match(third?.json, { aps: { alert: { title: 'Hello', body: 'again' } }, order: '42', messageId })
  t.same((await deadLetters(broker)).map((l) => l.id), [fcmLetter?.id], 'no longer a dead letter')
  const again = await api(broker, 'POST', `/v1/admin/dead-letters/${apnsLetter?.id as string}/replay`, { token: admin })
  t.equal(again.status, 404, 'replayed once')

  const refused = fakes.fcm.messages.length
  const all = await api(broker, 'POST', '/v1/admin/dead-letters/replay', { token: admin })
  t.same([all.status, all.body], [202, { replayed: 1 }])
  const messages = await fakes.fcm.waitForMessages(refused + 1)
  await broker.server.relay?.drain()
  t.equal(fakes.fcm.messages.length, refused + 1, 'sent once')
  t.equal(messages[refused]?.status, 200)
  t.equal(messages[refused]?.token, fcmToken)
  t.same(await deadLetters(broker), [])
  t.equal(fakes.apns.requests.length, 3, 'nothing sent twice')
  t.match((await api(broker, 'GET', '/metrics')).text, /\nherald_relay_dead_letters 0\n/)
})

t.test('purged dead letters are gone and never sent', async (t) => {
  const { broker, fakes } = await rig(t)
  const token = apnsDeviceToken()
  await register(broker, { provider: 'apns', token })
  fakes.apns.respond(token, { status: 503, reason: 'ServiceUnavailable', times: 6 })
  for (let i = 0; i < 3; i++) t.equal((await api(broker, 'POST', '/v1/push', { token: backend, body: { to: { user: 'alice' }, data: { n: String(i) } } })).status, 202)
  await broker.server.relay?.drain()
  const letters = await deadLetters(broker)
  t.equal(letters.length, 3)

  const one = await api(broker, 'DELETE', `/v1/admin/dead-letters/${letters[0]?.id as string}`, { token: admin })
  t.equal(one.status, 204)
  t.equal((await api(broker, 'GET', `/v1/admin/dead-letters/${letters[0]?.id as string}`, { token: admin })).status, 404)
  const rest = await api(broker, 'DELETE', '/v1/admin/dead-letters', { token: admin })
  t.same([rest.status, rest.body], [200, { purged: 2 }])
  t.same(await deadLetters(broker), [])
  t.same((await api(broker, 'POST', '/v1/admin/dead-letters/replay', { token: admin })).body, { replayed: 0 })
  await broker.server.relay?.drain()
  t.equal(fakes.apns.requests.length, 6, 'no request after the purge')
})
