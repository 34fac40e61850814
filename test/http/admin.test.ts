/**
 * The admin endpoints over real sockets: who may call them, the connected
 * clients of a broker (MQTT over TCP and WebSocket), disconnecting one while
 * its session stays, and a session's queue depth.
 */
import t from 'tap'
import { brokerEvent, connect, offlineSession, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })
const bob = sign({ sub: 'bob' })
const service = sign({ sub: 'backend', role: 'service' })

/** Every admin operation, with a body or query that would be refused 400 if the role were not checked first. */
const operations: Array<[string, string, unknown?]> = [
  ['GET', '/v1/admin/clients?limit=0'],
  ['GET', '/v1/admin/clients/some-client'],
  ['DELETE', '/v1/admin/clients/some-client/connection'],
  ['GET', '/v1/admin/dead-letters?limit=0'],
  ['GET', '/v1/admin/dead-letters/job-1'],
  ['POST', '/v1/admin/dead-letters/job-1/replay'],
  ['POST', '/v1/admin/dead-letters/replay'],
  ['DELETE', '/v1/admin/dead-letters/job-1'],
  ['DELETE', '/v1/admin/dead-letters'],
  ['POST', '/v1/admin/backup', { dir: 'relative', extra: true }],
  ['GET', '/v1/admin/overview'],
  ['GET', '/v1/admin/buckets?scope=nonsense&limit=0'],
]

t.test('admin endpoints answer 401 without a valid token and 403 to any role but admin, before looking at the request', async (t) => {
  const broker = await startBroker(t)
  for (const [method, path, body] of operations) {
    const options = body === undefined ? {} : { body }
    const missing = await api(broker, method, path, options)
    t.equal(missing.status, 401, `${method} ${path} without a token`)
    t.equal(missing.body?.error?.code, 'TOKEN_MISSING')
    const invalid = await api(broker, method, path, { ...options, token: 'not-a-jwt' })
    t.equal(invalid.body?.error?.code, 'TOKEN_INVALID', `${method} ${path} with a bad token`)
    for (const [who, token] of [['a device', alice], ['a service', service]] as const) {
      const refused = await api(broker, method, path, { ...options, token })
      t.equal(refused.status, 403, `${method} ${path} as ${who}`)
      t.equal(refused.body?.error?.code, 'NOT_AUTHORIZED')
    }
  }
  t.equal((await api(broker, 'GET', '/v1/admin/overview', { token: admin })).status, 200, 'an admin gets in')
})

async function connected (broker: TestBroker): Promise<Array<Record<string, unknown>>> {
  const response = await api(broker, 'GET', '/v1/admin/clients', { token: admin })
  t.equal(response.status, 200)
  return response.body.clients as Array<Record<string, unknown>>
}

t.test('connected clients are listed with user, transport, address and since when; filtered by user, a page at a time', async (t) => {
  const broker = await startBroker(t)
  const before = Date.now()
  await connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: alice })
  await connect(t, broker.wsUrl, { clientId: 'alice-web', password: alice })
  await connect(t, broker.mqttUrl, { clientId: 'bob-phone', password: bob })

  const all = await connected(broker)
  t.same(all.map((c) => c.clientId), ['alice-phone', 'alice-web', 'bob-phone'], 'every connection, in client id order')
  t.match(all[0], { clientId: 'alice-phone', user: 'alice', node: null, address: '127.0.0.1', transport: 'tcp' })
  t.match(all[1], { clientId: 'alice-web', user: 'alice', transport: 'websocket' })
  t.ok(Date.parse(String(all[0]?.connectedAt)) >= before - 1000, 'connectedAt is when it connected')

  const alices = await api(broker, 'GET', '/v1/admin/clients?user=alice', { token: admin })
  t.same(alices.body.clients.map((c: { clientId: string }) => c.clientId), ['alice-phone', 'alice-web'])
  t.equal(alices.body.total, 2)
  t.same((await api(broker, 'GET', '/v1/admin/clients?user=carol', { token: admin })).body, { clients: [], total: 0, next: null })

  const first = await api(broker, 'GET', '/v1/admin/clients?limit=2', { token: admin })
  t.same(first.body.clients.map((c: { clientId: string }) => c.clientId), ['alice-phone', 'alice-web'])
  t.equal(first.body.total, 3)
  t.equal(first.body.next, 'alice-web')
  const second = await api(broker, 'GET', `/v1/admin/clients?limit=2&after=${first.body.next as string}`, { token: admin })
  t.same(second.body.clients.map((c: { clientId: string }) => c.clientId), ['bob-phone'])
  t.equal(second.body.next, null)

  const searched = await api(broker, 'GET', '/v1/admin/clients?search=-p', { token: admin })
  t.same([searched.body.clients.map((c: { clientId: string }) => c.clientId), searched.body.total], [['alice-phone', 'bob-phone'], 2], 'search: a part of the client id')
  t.same((await api(broker, 'GET', '/v1/admin/clients?search=phone&user=bob', { token: admin })).body.clients.map((c: { clientId: string }) => c.clientId), ['bob-phone'])

  const overview = await api(broker, 'GET', '/v1/admin/overview', { token: admin })
  t.match(overview.body, { node: null, clients: { connected: 3 }, relay: { outbox: 0, deadLetters: 0 } })
})

t.test('a client id shows its connection, owner and session; disconnecting closes the connection and keeps the session', async (t) => {
  const broker = await startBroker(t)
  const phone = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: alice })
  await phone.subscribeAsync('users/alice/news', { qos: 1 })

  const shown = await api(broker, 'GET', '/v1/admin/clients/alice-phone', { token: admin })
  t.equal(shown.status, 200)
  t.match(shown.body, {
    clientId: 'alice-phone',
    connected: true,
    connection: { user: 'alice', transport: 'tcp' },
    owner: 'alice',
    installation: false,
    session: { subscriptions: [{ topic: 'users/alice/news', qos: 1 }], queuedMessages: 0, will: false },
  })

  const closed = new Promise<void>((resolve) => phone.once('close', () => resolve()))
  const gone = brokerEvent(broker, 'clientDisconnect', 'alice-phone')
  const disconnected = await api(broker, 'DELETE', '/v1/admin/clients/alice-phone/connection', { token: admin })
  t.equal(disconnected.status, 204)
  await closed
  await gone
  t.pass('the device saw its connection close')
  const after = await api(broker, 'GET', '/v1/admin/clients/alice-phone', { token: admin })
  t.match(after.body, { connected: false, connection: null, owner: 'alice', session: { subscriptions: [{ topic: 'users/alice/news', qos: 1 }] } }, 'the session stays')
  t.same(await connected(broker), [])

  const again = await api(broker, 'DELETE', '/v1/admin/clients/alice-phone/connection', { token: admin })
  t.equal(again.status, 404, 'not connected any more')
  t.equal(again.body.error.code, 'NOT_FOUND')
  const unknown = await api(broker, 'GET', '/v1/admin/clients/nobody', { token: admin })
  t.equal(unknown.status, 404, 'a client id with nothing stored')
  // client ids may hold any character: one with a slash, percent-encoded in the path
  await connect(t, broker.mqttUrl, { clientId: 'a/b c', password: bob })
  const odd = await api(broker, 'GET', `/v1/admin/clients/${encodeURIComponent('a/b c')}`, { token: admin })
  t.match(odd.body, { clientId: 'a/b c', connected: true })
})

t.test('the queue depth of an offline persistent session counts its queued messages', async (t) => {
  const broker = await startBroker(t)
  await offlineSession(t, broker, 'alice-phone', alice, 'users/alice/news')
  for (let i = 0; i < 3; i++) {
    const published = await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/news', payload: `n${i}`, qos: 1 } })
    t.equal(published.status, 202)
  }
  const shown = await api(broker, 'GET', '/v1/admin/clients/alice-phone', { token: admin })
  t.match(shown.body, { connected: false, session: { queuedMessages: 3 } })
  const overview = await api(broker, 'GET', '/v1/admin/overview', { token: admin })
  t.match(overview.body.queues, { sessions: 1, messages: 3 })

  // the depth is read without touching the queue: the device gets all three
  const received: string[] = []
  const all = new Promise<void>((resolve) => {
    void connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: alice }, (_topic, payload) => {
      received.push(payload.toString())
      if (received.length === 3) resolve()
    })
  })
  await all
  t.same(received, ['n0', 'n1', 'n2'])
})

t.test('a user\'s installations, listed for an admin or a service; a device sees only its own', async (t) => {
  const broker = await startBroker(t)
  for (const token of [alice, alice, bob]) t.equal((await api(broker, 'POST', '/v1/installations', { token, body: {} })).status, 201)
  const ids = (response: { body: { installations: Array<{ user: string }> } }): string[] => response.body.installations.map((i) => i.user)
  t.same(ids(await api(broker, 'GET', '/v1/installations?user=alice', { token: admin })), ['alice', 'alice'])
  t.same(ids(await api(broker, 'GET', '/v1/installations?user=bob', { token: service })), ['bob'])
  t.same(ids(await api(broker, 'GET', '/v1/installations?user=alice', { token: alice })), ['alice', 'alice'], 'one\'s own, named')
  const refused = await api(broker, 'GET', '/v1/installations?user=bob', { token: alice })
  t.same([refused.status, refused.body.error.code], [403, 'NOT_AUTHORIZED'])
  t.equal((await api(broker, 'GET', '/v1/installations?user=a%2Fb', { token: admin })).status, 400, 'a user id is one topic level')
})

t.test('the buckets of a scope: app buckets as created, a user\'s or group\'s that hold objects; objects read through the scope\'s routes', async (t) => {
  const broker = await startBroker(t)
  const write = async (path: string, token: string): Promise<void> => { t.equal((await api(broker, 'POST', path, { token, body: { n: 1 } })).status, 201, path) }
  t.equal((await api(broker, 'PUT', '/v1/app/buckets/news', { token: admin, body: {} })).status, 201)
  t.equal((await api(broker, 'PUT', '/v1/app/buckets/alerts', { token: admin, body: { acl: { read: ['role:admin'], write: ['role:admin'] } } })).status, 201)
  await write('/v1/users/alice/buckets/notes/objects', alice)
  await write('/v1/users/alice/buckets/drafts/objects', alice)
  await write('/v1/users/bob/buckets/notes/objects', bob)
  await write('/v1/groups/ops/buckets/tasks/objects', service)

  const names = async (query: string): Promise<unknown> => {
    const listed = await api(broker, 'GET', `/v1/admin/buckets${query}`, { token: admin })
    t.equal(listed.status, 200, query)
    return [listed.body.buckets.map((b: { name: string }) => b.name), listed.body.next]
  }
  t.same(await names(''), [['alerts', 'news'], null], 'app, the default scope: every app bucket, whatever its ACL')
  t.same(await names('?scope=users/alice'), [['drafts', 'notes'], null])
  t.same(await names('?scope=users/alice&limit=1'), [['drafts'], 'drafts'])
  t.same(await names('?scope=users/alice&after=drafts'), [['notes'], null])
  t.same(await names('?scope=groups/ops'), [['tasks'], null])
  t.same(await names('?scope=users/carol'), [[], null])
  const user = await api(broker, 'GET', '/v1/admin/buckets?scope=users/alice', { token: admin })
  t.match(user.body, { scope: 'users/alice', buckets: [{ scope: 'users/alice', name: 'drafts', eventsTopic: 'users/alice/buckets/drafts/events' }] })
  const app = await api(broker, 'GET', '/v1/admin/buckets?scope=app', { token: admin })
  t.match(app.body.buckets[0], { scope: 'app', name: 'alerts', acl: { read: ['role:admin'] } })
  for (const bad of ['users', 'users/', 'users/a/b', 'devices/x', 'groups/$sys']) {
    const refused = await api(broker, 'GET', `/v1/admin/buckets?scope=${encodeURIComponent(bad)}`, { token: admin })
    t.same([refused.status, refused.body.error.code], [400, 'INVALID_REQUEST'], `scope ${bad}`)
  }
  const objects = await api(broker, 'GET', '/v1/users/alice/buckets/notes/objects', { token: admin })
  t.same([objects.status, objects.body.objects.length], [200, 1], 'an admin reads a user\'s objects')
})
