import t from 'tap'
import { connackCode, sign, startBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

// limits.maxInstallationsPerUser (issue 14, item 3): one token made 2,000
// installations, each a persistent session that queued every message of its user.

const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })

t.test('POST /v1/installations beyond limits.maxInstallationsPerUser answers 409 TOO_MANY_INSTALLATIONS', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxInstallationsPerUser: 2 } } })
  const first = await api<{ installationId: string }>(broker, 'POST', '/v1/installations', { token: alice, body: {} })
  const second = await api<{ installationId: string }>(broker, 'POST', '/v1/installations', { token: alice, body: {} })
  t.same([first.status, second.status], [201, 201])

  const third = await api(broker, 'POST', '/v1/installations', { token: alice, body: {} })
  t.equal(third.status, 409)
  t.equal(third.body.error.code, 'TOO_MANY_INSTALLATIONS')
  t.match(third.body.error.message, /delete one/)
  // a service registering for alice counts against alice
  const onBehalf = await api(broker, 'POST', '/v1/installations', { token: service, body: { user: 'alice' } })
  t.equal(onBehalf.status, 409, 'a service cannot go past it for her either')
  // other users are not affected
  t.equal((await api(broker, 'POST', '/v1/installations', { token: bob, body: {} })).status, 201)

  const listed = await api<{ installations: unknown[] }>(broker, 'GET', '/v1/installations', { token: alice })
  t.equal(listed.body.installations.length, 2, 'the refused ones were not stored')

  // deleting one makes room
  t.equal((await api(broker, 'DELETE', `/v1/installations/${first.body.installationId}`, { token: alice })).status, 204)
  const replacement = await api<{ installationId: string }>(broker, 'POST', '/v1/installations', { token: alice, body: {} })
  t.equal(replacement.status, 201)
  // a changed installation is no new one
  t.equal((await api(broker, 'PATCH', `/v1/installations/${second.body.installationId}`, { token: alice, body: { mqtt: false } })).status, 200)
  t.equal(await connackCode(broker.mqttUrl, { clientId: replacement.body.installationId, clean: false, password: alice }), 0, 'the new installation connects')
})

t.test('concurrent registrations cannot go past the limit', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxInstallationsPerUser: 3 } } })
  const results = await Promise.all(Array.from({ length: 10 }, async () => await api(broker, 'POST', '/v1/installations', { token: alice, body: {} })))
  t.same(results.map((r) => r.status).sort(), [201, 201, 201, 409, 409, 409, 409, 409, 409, 409])
  const listed = await api<{ installations: unknown[] }>(broker, 'GET', '/v1/installations', { token: alice })
  t.equal(listed.body.installations.length, 3)
})

t.test('HTTP subscriptions of an installation count against limits.maxSubscriptionsPerClient: 409 TOO_MANY_SUBSCRIPTIONS', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxSubscriptionsPerClient: 2 } } })
  const created = await api<{ installationId: string }>(broker, 'POST', '/v1/installations', { token: alice, body: {} })
  const id = created.body.installationId
  const path = (filter: string): string => `/v1/installations/${id}/subscriptions/${encodeURIComponent(filter)}`
  // the inbox is one
  t.equal((await api(broker, 'PUT', path('users/alice/a'), { token: alice })).status, 200)
  const refused = await api(broker, 'PUT', path('users/alice/b'), { token: alice })
  t.equal(refused.status, 409)
  t.equal(refused.body.error.code, 'TOO_MANY_SUBSCRIPTIONS')
  t.equal((await api(broker, 'PUT', `${path('users/alice/a')}?qos=0`, { token: alice })).status, 200, 'a filter it holds may be subscribed again')
  const everywhere = await api(broker, 'PUT', `/v1/users/me/subscriptions/${encodeURIComponent('users/alice/c')}`, { token: alice })
  t.equal(everywhere.status, 409, 'subscribing every installation of the user refuses when one is full')
  const listed = await api<{ subscriptions: Array<{ topic: string }> }>(broker, 'GET', `/v1/installations/${id}/subscriptions`, { token: alice })
  t.same(listed.body.subscriptions.map((s) => s.topic).sort(), ['users/alice/a', 'users/alice/inbox'])
})
