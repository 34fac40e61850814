import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import mqtt from 'mqtt'
import t from 'tap'
import { makeTempDir, sign } from '../helpers/broker.js'
import { documentedOperations, fillPath, routedOperations, type OpenApiDocument } from '../helpers/openapi.js'
import { assertError, buildRouteApp, type CallOptions, type RouteApp, type RouteResponse } from '../helpers/route-app.js'

/**
 * The HTTP API's contract with its OpenAPI document, route by route, through
 * fastify's inject() (no socket): the document lists exactly the routes the
 * server answers; every /v1 operation wants a bearer token before it looks at
 * anything else; every operation, called as it should be, answers a status the
 * document lists with a body of the documented shape. Behaviour of single
 * routes is tested in test/http/ (over real sockets).
 */

const alice = sign({ sub: 'alice', groups: ['g1'] })
const service = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })

/** Routes outside the document on purpose: probes, the scrape and the document itself. */
// the admin console's static files (src/http/console.ts) are a page, not the API
const undocumented = ['GET /healthz', 'GET /readyz', 'GET /metrics', 'GET /v1/openapi.json', 'GET /admin', 'GET /admin/', 'GET /admin/app.js', 'GET /admin/app.css']

/** Every sweep below makes many requests, many of them refused 401, from one address. */
const unlimited = { http: { rateLimit: { max: 100000 }, authFailureLimit: { max: 100000 } } }

async function openApiDocument (api: RouteApp): Promise<OpenApiDocument> {
  const response = await api.call('GET', '/v1/openapi.json')
  if (response.status !== 200) throw new Error(`GET /v1/openapi.json: ${response.status}`)
  return response.body as OpenApiDocument
}

/** Parameter values that pass every route's schema, so a request reaches the route's own checks. */
const sampleParams = { id: 'i-1', name: 'news', bucket: 'notes', uid: 'alice', gid: 'g1', '*': 'users/alice/x', clientId: 'c-1' }

t.test('the OpenAPI document lists exactly the routes the server answers', async (t) => {
  const api = await buildRouteApp(t)
  const doc = await openApiDocument(api)
  t.match(doc.openapi, /^3\.\d+\.\d+$/, 'OpenAPI 3')

  const routed = routedOperations(api.app)
  for (const operation of undocumented) t.ok(routed.includes(operation), `${operation} is routed (and left out of the document)`)
  const documented = documentedOperations(doc)
  t.ok(documented.length > 30, 'the document lists the API')
  t.strictSame(routed.filter((operation) => !undocumented.includes(operation)).sort(), [...documented].sort(), 'every documented operation is routed, every routed one documented')

  for (const operation of documented) {
    const [method, path] = operation.split(' ') as [string, string]
    const op = doc.paths[path]?.[method.toLowerCase()]
    t.ok(typeof op?.summary === 'string' && op.summary.length > 0, `${operation}: a summary`)
    const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort()
    const declared = (op?.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name).sort()
    t.strictSame(declared, inPath, `${operation}: its path parameters are declared`)
    t.ok(Object.keys(op?.responses ?? {}).some((status) => /^2\d\d$/.test(status)), `${operation}: a success response`)
    for (const range of ['4XX', '5XX']) t.ok(op?.responses[range]?.content?.['application/json']?.schema, `${operation}: its ${range} error body`)
  }
})

t.test('every /v1 operation wants a bearer token first: 401 before validation, lookup or role', async (t) => {
  const api = await buildRouteApp(t, unlimited)
  const doc = await openApiDocument(api)
  const ajv = new Ajv({ strict: false, allErrors: true })
  const notAJwt = 'not-a-jwt'
  const expired = sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 60 })
  for (const operation of documentedOperations(doc)) {
    const [method, path] = operation.split(' ') as [string, string]
    const url = fillPath(path, sampleParams)
    const body = doc.paths[path]?.[method.toLowerCase()]?.requestBody !== undefined ? { notAField: true } : undefined
    const options = body !== undefined ? { body } : {}
    const documented = ajv.compile(doc.paths[path]?.[method.toLowerCase()]?.responses['4XX']?.content?.['application/json']?.schema ?? {})
    for (const [token, code] of [[undefined, 'TOKEN_MISSING'], [notAJwt, 'TOKEN_INVALID'], [expired, 'TOKEN_EXPIRED']] as const) {
      const response = await api.call(method, url, { ...options, ...(token !== undefined && { token }) })
      assertError(t, response, code, `${operation} ${token === undefined ? 'without a token' : token === notAJwt ? 'with a token that is not a JWT' : 'with an expired token'}`)
      t.ok(documented(response.body), `${operation}: ${code}, the documented error body`, { errors: documented.errors })
    }
  }
  // none of the refused requests changed anything
  t.strictSame((await api.call('GET', '/v1/topics', { token: admin })).body, { topics: [] })
  t.strictSame((await api.call('GET', '/v1/app/buckets', { token: admin })).body, { buckets: [] })
  t.strictSame((await api.call('GET', '/v1/installations', { token: alice })).body, { installations: [] })
  t.strictSame((await api.call('GET', '/v1/users/alice/buckets/notes/objects', { token: alice })).body, { objects: [], next: null })
})

t.test('every operation, called as it should be, answers a documented status with a body of the documented shape', async (t) => {
  const api = await buildRouteApp(t)
  const doc = await openApiDocument(api)
  const ajv = new Ajv({ strict: false, allErrors: true })
  const exercised = new Set<string>()

  /** Calls an operation by its documented path and checks the answer against the document. */
  const call = async (method: string, path: string, params: Record<string, string>, status: number, options: CallOptions = {}): Promise<RouteResponse> => {
    const operation = `${method} ${path}`
    const response = await api.call(method, fillPath(path, params), options)
    t.equal(response.status, status, `${operation}: ${status}`)
    const documented = doc.paths[path]?.[method.toLowerCase()]?.responses[String(response.status)]
    t.ok(documented !== undefined, `${operation}: ${response.status} is a documented response`)
    const schema = documented?.content?.['application/json']?.schema
    if (schema === undefined) {
      t.equal(response.text, '', `${operation}: no body, as documented`)
    } else {
      t.match(String(response.headers['content-type'] ?? ''), /^application\/json/, `${operation}: JSON`)
      const validate = ajv.compile(schema)
      t.ok(validate(response.body), `${operation}: the body has the documented shape`, { errors: validate.errors, body: response.body })
    }
    if (response.status === status) exercised.add(operation)
    return response
  }

  // installations and their subscriptions
  const created = await call('POST', '/v1/installations', {}, 201, { token: alice, body: { pushToken: { provider: 'fcm', token: 'fcm-token-0123456789abcdef' } } })
  const id = created.body.installationId as string
  await call('GET', '/v1/installations', {}, 200, { token: alice })
  await call('GET', '/v1/installations/{id}', { id }, 200, { token: alice })
  await call('PATCH', '/v1/installations/{id}', { id }, 200, { token: alice, body: { pushToken: { provider: 'apns', token: 'apns-token-fedcba9876543210', environment: 'development' } } })
  await call('PATCH', '/v1/installations/{id}', { id }, 200, { token: alice, body: { pushToken: null, mqtt: false } })
  await call('PUT', '/v1/installations/{id}/subscriptions/{*}', { id, '*': 'users/alice/news/#' }, 200, { token: alice })
  await call('GET', '/v1/installations/{id}/subscriptions', { id }, 200, { token: alice })
  await call('DELETE', '/v1/installations/{id}/subscriptions/{*}', { id, '*': 'users/alice/news/#' }, 204, { token: alice })
  await call('PUT', '/v1/users/me/subscriptions/{*}', { '*': 'users/alice/alerts' }, 200, { token: alice })

  // publish and push
  await call('POST', '/v1/publish', {}, 202, { token: alice, body: { topic: 'users/alice/x', payload: 'hello' } })
  await call('POST', '/v1/push', {}, 202, { token: service, body: { to: { user: 'alice' }, notification: { title: 'hi' } } })
  await call('POST', '/v1/push', {}, 202, { token: alice, body: { to: { installation: id }, data: { k: 'v' } } })

  // app topics
  await call('PUT', '/v1/topics/{name}', { name: 'news' }, 201, { token: admin, body: {} })
  await call('PUT', '/v1/topics/{name}', { name: 'news' }, 200, { token: admin, body: { acl: { subscribe: ['group:g1'] } } })
  await call('GET', '/v1/topics', {}, 200, { token: alice })
  await call('GET', '/v1/topics/{name}', { name: 'news' }, 200, { token: alice })
  await call('DELETE', '/v1/topics/{name}', { name: 'news' }, 204, { token: admin })

  // buckets: the app bucket an admin makes, a user's and a group's
  await call('PUT', '/v1/app/buckets/{bucket}', { bucket: 'notes' }, 201, { token: admin })
  await call('PUT', '/v1/app/buckets/{bucket}', { bucket: 'notes' }, 200, { token: admin, body: { acl: { read: ['authenticated'], write: ['user:alice'] } } })
  await call('GET', '/v1/app/buckets', {}, 200, { token: alice })
  await call('GET', '/v1/admin/buckets', {}, 200, { token: admin })
  for (const [scope, params] of [['app', {}], ['users/{uid}', { uid: 'alice' }], ['groups/{gid}', { gid: 'g1' }]] as const) {
    const base = `/v1/${scope}/buckets/{bucket}`
    const bucket = { ...params, bucket: 'notes' }
    const posted = await call('POST', `${base}/objects`, bucket, 201, { token: alice, body: { text: 'first' } })
    await call('GET', `${base}/objects`, bucket, 200, { token: alice })
    await call('GET', `${base}/objects/{id}`, { ...bucket, id: posted.body.id as string }, 200, { token: alice })
    await call('PUT', `${base}/objects/{id}`, { ...bucket, id: 'named' }, 201, { token: alice, body: { text: 'v1' } })
    await call('PUT', `${base}/objects/{id}`, { ...bucket, id: 'named' }, 200, { token: alice, body: { text: 'v2' } })
    await call('PATCH', `${base}/objects/{id}`, { ...bucket, id: 'named' }, 200, { token: alice, body: { more: true } })
    await call('DELETE', `${base}/objects/{id}`, { ...bucket, id: 'named' }, 204, { token: alice })
    await call('GET', base, bucket, 200, { token: alice })
    await call('DELETE', base, bucket, 204, { token: scope === 'app' ? admin : alice })
  }

  // admin: a device connected to the broker (no listener here: a socket handed to aedes), relay dead letters written as the relay would
  const server = createServer((socket) => api.broker.aedes.handle(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, { clientId: id, clean: false, username: 'alice', password: alice, reconnectPeriod: 0 })
  t.teardown(async () => await device.endAsync(true))
  await call('GET', '/v1/admin/clients', {}, 200, { token: admin })
  await call('GET', '/v1/admin/clients/{clientId}', { clientId: id }, 200, { token: admin })
  await call('DELETE', '/v1/admin/clients/{clientId}/connection', { clientId: id }, 204, { token: admin })
  const content = { kind: 'push' as const, messageId: 'm-1', topic: 'users/alice/inbox', notification: { title: 'hi' }, data: {} }
  for (const jobId of ['job-1', 'job-2', 'job-3', 'job-4']) {
    await api.backend.relayOutbox.deadLetter({ id: jobId, installationId: id, content, createdAt: Date.now(), expiresAt: Date.now() + 60_000, attempts: 10, notBefore: 0 }, 'fcm: unavailable')
  }
  await call('GET', '/v1/admin/dead-letters', {}, 200, { token: admin })
  await call('GET', '/v1/admin/dead-letters/{id}', { id: 'job-1' }, 200, { token: admin })
  await call('POST', '/v1/admin/dead-letters/{id}/replay', { id: 'job-1' }, 202, { token: admin })
  await call('DELETE', '/v1/admin/dead-letters/{id}', { id: 'job-2' }, 204, { token: admin })
  await call('POST', '/v1/admin/dead-letters/replay', {}, 202, { token: admin })
  await api.backend.relayOutbox.deadLetter({ id: 'job-5', installationId: id, content, createdAt: Date.now(), expiresAt: Date.now() + 60_000, attempts: 10, notBefore: 0 }, 'apns: BadDeviceToken')
  await call('DELETE', '/v1/admin/dead-letters', {}, 200, { token: admin })
  await call('POST', '/v1/admin/backup', {}, 201, { token: admin, body: { dir: join(await makeTempDir(t), 'backup') } })
  await call('GET', '/v1/admin/overview', {}, 200, { token: admin })

  await call('DELETE', '/v1/installations/{id}', { id }, 204, { token: alice })

  t.strictSame(documentedOperations(doc).filter((operation) => !exercised.has(operation)), [], 'every documented operation was called, and answered as expected')
})
