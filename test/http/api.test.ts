import t, { type Test } from 'tap'
import { errorCodes, type ErrorCode } from '../../src/errors/index.js'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api, type ApiResponse } from '../helpers/http.js'

const alice = sign({ sub: 'alice', groups: ['g1'] })
const bob = sign({ sub: 'bob' })
const admin = sign({ sub: 'root', role: 'admin' })

/** An error response: the one JSON shape, and the status the code table gives its code. */
function assertError (t: Test, response: ApiResponse, code: ErrorCode, what: string): void {
  t.equal(response.status, errorCodes[code].status, `${what}: ${errorCodes[code].status}`)
  t.match(response.headers.get('content-type') ?? '', /^application\/json/, `${what}: JSON`)
  t.strictSame(Object.keys(response.body ?? {}), ['error'], `${what}: only an error member`)
  t.equal(response.body?.error?.code, code, `${what}: ${code}`)
  t.type(response.body?.error?.message, 'string', `${what}: a message`)
}

/** The value of one sample in Prometheus text exposition, or undefined. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const have = new Map([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(match[3])
  }
  return undefined
}

t.test('installations: create, read, list, patch, token moves, delete', async (t) => {
  const broker = await startBroker(t)
  const aliceToken = 'fcm-registration-token-of-alice-phone-0123456789abcdef'

  const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken: { provider: 'fcm', token: aliceToken } } })
  t.equal(created.status, 201)
  const id = created.body.installationId as string
  t.type(id, 'string')
  t.ok(id.length > 0)
  t.equal(created.body.mqtt.clientId, id, 'the MQTT client id is the installation id')
  t.equal(created.body.mqtt.inboxTopic, 'users/alice/inbox')
  t.equal(created.body.mqtt.host, '127.0.0.1')
  t.equal(created.body.mqtt.wsPath, broker.config.http.wsPath)
  t.strictSame(created.body.mqtt.ports, { mqtt: broker.ports.mqtt, mqtts: null, ws: broker.ports.http, wss: null }, 'the ports the broker listens on')
  t.match(created.body.installation, {
    id, user: 'alice', mqtt: true, connected: false,
    pushToken: { provider: 'fcm', environment: null, effectiveEnvironment: null, apnsTopic: null, tokenSuffix: aliceToken.slice(-6) },
  })
  t.notOk(created.text.includes(aliceToken), 'the token itself is never returned')

  const bobs = await api(broker, 'POST', '/v1/installations', { token: bob, body: { mqtt: false } })
  t.equal(bobs.status, 201)
  t.equal(bobs.body.installation.mqtt, false, 'a push-only installation')
  const bobId = bobs.body.installationId as string

  const list = await api(broker, 'GET', '/v1/installations', { token: alice })
  t.equal(list.status, 200)
  t.strictSame(list.body.installations.map((i: { id: string }) => i.id), [id], 'alice lists hers only')
  t.notOk(list.text.includes(aliceToken))
  t.strictSame((await api(broker, 'GET', '/v1/installations', { token: bob })).body.installations.map((i: { id: string }) => i.id), [bobId])

  const got = await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })
  t.equal(got.status, 200)
  t.strictSame(got.body, created.body.installation, 'GET returns what POST did')

  await t.test('a new installation is subscribed to its owner’s inbox', async (t) => {
    const subs = await api(broker, 'GET', `/v1/installations/${id}/subscriptions`, { token: alice })
    t.equal(subs.status, 200)
    t.strictSame(subs.body.subscriptions, [{ topic: 'users/alice/inbox', qos: 1 }])
  })

  await t.test('PATCH replaces and removes the push token', async (t) => {
    const replacement = 'apns-device-token-ffeeddccbbaa99887766554433221100'
    const patched = await api(broker, 'PATCH', `/v1/installations/${id}`, {
      token: alice,
      body: { pushToken: { provider: 'apns', token: replacement, environment: 'development', apnsTopic: 'com.example.app' } },
    })
    t.equal(patched.status, 200)
    t.strictSame(patched.body.pushToken, { provider: 'apns', environment: 'development', effectiveEnvironment: 'development', apnsTopic: 'com.example.app', tokenSuffix: replacement.slice(-6) })
    t.notOk(patched.text.includes(replacement), 'the token itself is never returned')
    t.ok(patched.body.updatedAt >= patched.body.createdAt)
    t.equal(patched.body.createdAt, created.body.installation.createdAt, 'createdAt is kept')
    t.strictSame((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).body.pushToken, patched.body.pushToken, 'stored')

    const mqttOff = await api(broker, 'PATCH', `/v1/installations/${id}`, { token: alice, body: { mqtt: false } })
    t.equal(mqttOff.body.mqtt, false)
    t.strictSame(mqttOff.body.pushToken, patched.body.pushToken, 'a PATCH without pushToken keeps it')
    t.equal((await api(broker, 'PATCH', `/v1/installations/${id}`, { token: alice, body: { mqtt: true } })).body.mqtt, true)

    const removed = await api(broker, 'PATCH', `/v1/installations/${id}`, { token: alice, body: { pushToken: null } })
    t.equal(removed.status, 200)
    t.equal(removed.body.pushToken, null)
    t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).body.pushToken, null, 'stored')
  })

  await t.test('a push token registered by another user moves to the new installation', async (t) => {
    const shared = 'fcm-token-of-a-phone-that-changed-hands-000111222333'
    const first = await api(broker, 'PATCH', `/v1/installations/${id}`, { token: alice, body: { pushToken: { provider: 'fcm', token: shared } } })
    t.equal(first.body.pushToken.tokenSuffix, shared.slice(-6))
    // the same string for the other provider is another token: it does not move
    const apns = await api(broker, 'POST', '/v1/installations', { token: bob, body: { pushToken: { provider: 'apns', token: shared } } })
    t.equal(apns.status, 201)
    t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).body.pushToken?.provider, 'fcm', 'another provider: alice keeps hers')

    const second = await api(broker, 'POST', '/v1/installations', { token: bob, body: { pushToken: { provider: 'fcm', token: shared } } })
    t.equal(second.status, 201)
    t.equal(second.body.installation.pushToken.tokenSuffix, shared.slice(-6))
    t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).body.pushToken, null, 'the old installation lost the token')
    t.equal((await api(broker, 'GET', `/v1/installations/${second.body.installationId as string}`, { token: bob })).body.pushToken.provider, 'fcm', 'the new one has it')
  })

  await t.test('DELETE removes the installation and closes its connection', async (t) => {
    const device = await connect(t, broker.mqttUrl, { clientId: id, clean: false, password: alice })
    t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).body.connected, true, 'connected: true while online')
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()))

    const deleted = await api(broker, 'DELETE', `/v1/installations/${id}`, { token: alice })
    t.equal(deleted.status, 204)
    t.equal(deleted.text, '', 'no body')
    await closed
    t.pass('the device connection was closed')
    assertError(t, await api(broker, 'GET', `/v1/installations/${id}`, { token: alice }), 'NOT_FOUND', 'GET after DELETE')
    assertError(t, await api(broker, 'DELETE', `/v1/installations/${id}`, { token: alice }), 'NOT_FOUND', 'DELETE after DELETE')
    assertError(t, await api(broker, 'GET', `/v1/installations/${id}/subscriptions`, { token: alice }), 'NOT_FOUND', 'subscriptions after DELETE')
    t.strictSame((await api(broker, 'GET', '/v1/installations', { token: alice })).body.installations, [], 'alice has none left')
  })
})

t.test('app topics: create, replace, create-only, list, delete', async (t) => {
  const broker = await startBroker(t)
  const acl = { subscribe: ['group:g1', 'user:bob'], publish: ['role:service'] }

  const created = await api(broker, 'PUT', '/v1/topics/news', { token: admin, body: { acl } })
  t.equal(created.status, 201)
  t.match(created.body, { name: 'news', mqttTopic: 'app/news', acl })
  t.type(created.body.createdAt, 'string')
  t.equal(created.body.createdAt, created.body.updatedAt)

  const replaced = await api(broker, 'PUT', '/v1/topics/news', { token: admin, body: { acl: { publish: ['role:admin'] } } })
  t.equal(replaced.status, 200, 'replacing is 200')
  t.strictSame(replaced.body.acl, { subscribe: ['authenticated'], publish: ['role:admin'] }, 'the ACL is replaced; an absent list takes its default')
  t.equal(replaced.body.createdAt, created.body.createdAt, 'createdAt is kept')

  assertError(t, await api(broker, 'PUT', '/v1/topics/news', { token: admin, body: {}, headers: { 'if-none-match': '*' } }), 'ALREADY_EXISTS', 'If-None-Match: * on an existing topic')
  t.strictSame((await api(broker, 'GET', '/v1/topics/news', { token: admin })).body.acl, replaced.body.acl, 'the refused create changed nothing')
  const createOnly = await api(broker, 'PUT', '/v1/topics/alerts', { token: admin, body: {}, headers: { 'if-none-match': '*' } })
  t.equal(createOnly.status, 201, 'If-None-Match: * creates a new topic')

  const got = await api(broker, 'GET', '/v1/topics/news', { token: alice })
  t.equal(got.status, 200)
  t.strictSame(got.body, replaced.body)
  const list = await api(broker, 'GET', '/v1/topics', { token: admin })
  t.strictSame(list.body.topics.map((topic: { name: string }) => topic.name), ['alerts', 'news'])

  const deleted = await api(broker, 'DELETE', '/v1/topics/news', { token: admin })
  t.equal(deleted.status, 204)
  t.equal(deleted.text, '')
  assertError(t, await api(broker, 'GET', '/v1/topics/news', { token: admin }), 'NOT_FOUND', 'GET after DELETE')
  assertError(t, await api(broker, 'DELETE', '/v1/topics/news', { token: admin }), 'NOT_FOUND', 'DELETE after DELETE')
  t.strictSame((await api(broker, 'GET', '/v1/topics', { token: admin })).body.topics.map((topic: { name: string }) => topic.name), ['alerts'])
  const publish = await api(broker, 'POST', '/v1/publish', { token: sign({ sub: 'backend', role: 'service' }), body: { topic: 'app/news', payload: 'x' } })
  assertError(t, publish, 'PUBLISH_DENIED', 'publish to a deleted topic')
})

t.test('OpenAPI document lists every /v1 route', async (t) => {
  const broker = await startBroker(t)
  const response = await api(broker, 'GET', '/v1/openapi.json')
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type') ?? '', /^application\/json/)
  const doc = response.body as { openapi: string, info: { title: string, version: string }, paths: Record<string, Record<string, unknown>>, components: { securitySchemes: Record<string, unknown> } }
  t.match(doc.openapi, /^3\.\d+\.\d+$/, 'an OpenAPI 3 document')
  t.type(doc.info.title, 'string')
  t.type(doc.info.version, 'string')
  t.match(doc.components.securitySchemes, { bearer: { type: 'http', scheme: 'bearer' } })

  const expected: Record<string, string[]> = {
    '/v1/publish': ['post'],
    '/v1/push': ['post'],
    '/v1/installations': ['get', 'post'],
    '/v1/installations/{id}': ['delete', 'get', 'patch'],
    '/v1/installations/{id}/subscriptions': ['get'],
    '/v1/installations/{id}/subscriptions/{*}': ['delete', 'put'],
    '/v1/users/me/subscriptions/{*}': ['put'],
    '/v1/topics': ['get'],
    '/v1/topics/{name}': ['delete', 'get', 'put'],
    '/v1/app/buckets': ['get'],
    '/v1/app/buckets/{bucket}': ['delete', 'get', 'put'],
    '/v1/app/buckets/{bucket}/objects': ['get', 'post'],
    '/v1/app/buckets/{bucket}/objects/{id}': ['delete', 'get', 'patch', 'put'],
    '/v1/users/{uid}/buckets/{bucket}': ['delete', 'get'],
    '/v1/users/{uid}/buckets/{bucket}/objects': ['get', 'post'],
    '/v1/users/{uid}/buckets/{bucket}/objects/{id}': ['delete', 'get', 'patch', 'put'],
    '/v1/groups/{gid}/buckets/{bucket}': ['delete', 'get'],
    '/v1/groups/{gid}/buckets/{bucket}/objects': ['get', 'post'],
    '/v1/groups/{gid}/buckets/{bucket}/objects/{id}': ['delete', 'get', 'patch', 'put'],
    '/v1/admin/clients': ['get'],
    '/v1/admin/clients/{clientId}': ['get'],
    '/v1/admin/clients/{clientId}/connection': ['delete'],
    '/v1/admin/dead-letters': ['delete', 'get'],
    '/v1/admin/dead-letters/{id}': ['delete', 'get'],
    '/v1/admin/dead-letters/{id}/replay': ['post'],
    '/v1/admin/dead-letters/replay': ['post'],
    '/v1/admin/backup': ['post'],
    '/v1/admin/overview': ['get'],
    '/v1/admin/buckets': ['get'],
  }
  const actual = Object.fromEntries(Object.entries(doc.paths).map(([path, item]) => [path, Object.keys(item).filter((k) => /^(get|put|post|patch|delete)$/.test(k)).sort()]))
  t.strictSame(actual, expected, 'exactly the /v1 routes, with their methods')

  const publish = doc.paths['/v1/publish']?.post as { requestBody?: { content?: Record<string, { schema?: { required?: string[] } }> }, responses?: Record<string, unknown> } | undefined
  t.strictSame(publish?.requestBody?.content?.['application/json']?.schema?.required, ['topic', 'payload'], 'request bodies carry their schema')
  t.ok(publish?.responses?.['202'], 'responses are documented')
})

t.test('health, readiness and metrics', async (t) => {
  const broker = await startBroker(t)

  const health = await api(broker, 'GET', '/healthz')
  t.equal(health.status, 200)
  t.strictSame(health.body, { status: 'ok' })
  const ready = await api(broker, 'GET', '/readyz')
  t.equal(ready.status, 200)
  t.strictSame(ready.body, { status: 'ready' })

  const scrape = async (): Promise<string> => {
    const response = await api(broker, 'GET', '/metrics')
    t.equal(response.status, 200)
    t.match(response.headers.get('content-type') ?? '', /^text\/plain/)
    return response.text
  }

  t.equal((await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/x', payload: 'p' } })).status, 202)
  t.equal((await api(broker, 'GET', '/v1/topics/nope', { token: alice })).status, 404)
  assertError(t, await api(broker, 'GET', '/v1/installations', { token: 'not-a-jwt' }), 'TOKEN_INVALID', 'a bad token')
  assertError(t, await api(broker, 'GET', '/v1/installations'), 'TOKEN_MISSING', 'no token')

  let text = await scrape()
  t.equal(sample(text, 'herald_http_requests_total', { method: 'POST', route: '/v1/publish', status: '202' }), 1, 'requests counted by route template and status')
  t.equal(sample(text, 'herald_http_requests_total', { method: 'GET', route: '/v1/topics/:name', status: '404' }), 1, 'the route label is the template, not the path')
  t.equal(sample(text, 'herald_http_requests_total', { method: 'GET', route: '/v1/installations', status: '401' }), 2)
  t.equal(sample(text, 'herald_auth_failures_total', { transport: 'http', code: 'TOKEN_INVALID' }), 1, 'a failed HTTP auth is counted')
  t.equal(sample(text, 'herald_auth_failures_total', { transport: 'http', code: 'TOKEN_MISSING' }), 1)
  t.equal(sample(text, 'herald_mqtt_connected_clients'), 0, 'no MQTT client yet')

  await connect(t, broker.mqttUrl, { clientId: 'metrics-probe', password: alice })
  text = await scrape()
  t.equal(sample(text, 'herald_mqtt_connected_clients'), 1, 'the connected mqtt.js client is counted')
  t.ok(sample(text, 'herald_process_cpu_user_seconds_total') !== undefined, 'default process metrics carry the herald_ prefix')
})

t.test('rate limit: the request over http.rateLimit.max is 429 RATE_LIMITED', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { rateLimit: { max: 3, windowSec: 60 } } } })
  for (let i = 1; i <= 3; i++) {
    t.equal((await api(broker, 'GET', '/v1/topics', { token: alice })).status, 200, `request ${i} passes`)
  }
  const limited = await api(broker, 'GET', '/v1/topics', { token: alice })
  assertError(t, limited, 'RATE_LIMITED', 'the 4th request')
  t.ok(limited.headers.get('retry-after') !== null, 'with Retry-After')
  assertError(t, await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/x', payload: 'p' } }), 'RATE_LIMITED', 'any other /v1 route')
  // probes and scrapes are never limited
  t.equal((await api(broker, 'GET', '/healthz')).status, 200)
  t.equal((await api(broker, 'GET', '/readyz')).status, 200)
  t.equal((await api(broker, 'GET', '/metrics')).status, 200)
})

t.test('every error code maps to a status the HTTP API documents', async (t) => {
  // 501: NOT_SUPPORTED, a backup asked of a cluster
  const documented = new Set([400, 401, 403, 404, 409, 412, 413, 415, 429, 500, 501, 503])
  for (const [code, spec] of Object.entries(errorCodes)) {
    t.ok(documented.has(spec.status), `${code} → ${spec.status}`)
    t.ok(spec.message.length > 0, `${code} has a default message`)
  }
  // the codes the API returns for each kind of problem
  const expected: Partial<Record<ErrorCode, number>> = {
    INVALID_REQUEST: 400,
    INVALID_JSON: 400,
    TOPIC_INVALID: 400,
    TOKEN_MISSING: 401,
    TOKEN_INVALID: 401,
    TOKEN_EXPIRED: 401,
    TOKEN_TOO_LARGE: 401,
    NOT_AUTHORIZED: 403,
    PUBLISH_DENIED: 403,
    SUBSCRIBE_DENIED: 403,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    PRECONDITION_FAILED: 412,
    PAYLOAD_TOO_LARGE: 413,
    UNSUPPORTED_MEDIA_TYPE: 415,
    RATE_LIMITED: 429,
    INTERNAL_ERROR: 500,
    SERVER_UNAVAILABLE: 503,
    NOT_SUPPORTED: 501,
  }
  for (const [code, status] of Object.entries(expected)) {
    t.equal(errorCodes[code as ErrorCode].status, status, `${code} is ${status}`)
  }
})

t.test('an oversized token is refused with TOKEN_TOO_LARGE', async (t) => {
  const broker: TestBroker = await startBroker(t)
  const huge = sign({ sub: 'alice', padding: 'x'.repeat(broker.config.auth.jwt.maxTokenBytes) })
  assertError(t, await api(broker, 'GET', '/v1/installations', { token: huge }), 'TOKEN_TOO_LARGE', 'a token over auth.jwt.maxTokenBytes')
})
