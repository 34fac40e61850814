import t, { type Test } from 'tap'
import { errorCodes, type ErrorCode } from '../../src/errors/index.js'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api, type ApiResponse } from '../helpers/http.js'

// The bucket API over real HTTP: CRUD, paging, preconditions, limits, who may
// do what in each scope, and a table of bad requests that change nothing.

const alice = sign({ sub: 'alice', groups: ['ops'] })
const bob = sign({ sub: 'bob' })
const dave = sign({ sub: 'dave', groups: ['ops'] })
const service = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })

function assertError (t: Test, response: ApiResponse, code: ErrorCode, what: string): void {
  t.equal(response.status, errorCodes[code].status, `${what}: ${errorCodes[code].status}`)
  t.strictSame(Object.keys(response.body ?? {}), ['error'], `${what}: only an error member`)
  t.equal(response.body?.error?.code, code, `${what}: ${code}`)
}

const objectKeys = ['body', 'createdAt', 'id', 'modifiedAt', 'owner', 'version']

t.test('objects: create, read, replace, patch, delete', async (t) => {
  const broker = await startBroker(t)
  const base = '/v1/users/alice/buckets/notes/objects'

  const created = await api(broker, 'POST', '/v1/users/me/buckets/notes/objects', { token: alice, body: { title: 'hi', tags: ['a', 'b'], n: 1.5, nested: { deep: [null, true] } } })
  t.equal(created.status, 201)
  t.strictSame(Object.keys(created.body).sort(), objectKeys, 'the object shape')
  const id = created.body.id as string
  t.match(id, /^[0-9A-Z]{26}$/, 'a generated id')
  t.match(created.body, { version: 1, owner: 'alice', body: { title: 'hi', tags: ['a', 'b'], n: 1.5, nested: { deep: [null, true] } } })
  t.equal(created.body.createdAt, created.body.modifiedAt)
  t.equal(created.headers.get('etag'), '"1"')
  t.equal(created.headers.get('location'), `/v1/users/alice/buckets/notes/objects/${id}`, 'users/me is the caller')

  const got = await api(broker, 'GET', `${base}/${id}`, { token: alice })
  t.equal(got.status, 200)
  t.strictSame(got.body, created.body)
  t.equal(got.headers.get('etag'), '"1"')

  const named = await api(broker, 'POST', `${base}?id=shopping-list_1`, { token: alice, body: { items: [] } })
  t.equal(named.status, 201)
  t.equal(named.body.id, 'shopping-list_1')
  assertError(t, await api(broker, 'POST', `${base}?id=shopping-list_1`, { token: alice, body: {} }), 'ALREADY_EXISTS', 'POST with an existing id')

  const replaced = await api(broker, 'PUT', `${base}/${id}`, { token: alice, body: { title: 'replaced' }, headers: { 'if-match': '1' } })
  t.equal(replaced.status, 200)
  t.match(replaced.body, { id, version: 2, createdAt: created.body.createdAt, body: { title: 'replaced' } })
  t.notOk('tags' in replaced.body.body, 'PUT replaces the whole body')
  t.equal(replaced.headers.get('etag'), '"2"')

  const put = await api(broker, 'PUT', `${base}/by-put`, { token: service, body: { made: 'by put' } })
  t.equal(put.status, 201, 'PUT creates')
  t.match(put.body, { id: 'by-put', version: 1, owner: 'backend' })

  const patched = await api(broker, 'PATCH', `${base}/${id}`, {
    token: alice,
    body: { title: null, done: true, meta: { by: 'alice' } },
    headers: { 'content-type': 'application/merge-patch+json', 'if-match': '"2"' },
  })
  t.equal(patched.status, 200)
  t.strictSame(patched.body.body, { done: true, meta: { by: 'alice' } })
  t.equal(patched.body.version, 3)
  const patchedJson = await api(broker, 'PATCH', `${base}/${id}`, { token: alice, body: { meta: { at: 1 } } })
  t.strictSame(patchedJson.body.body, { done: true, meta: { by: 'alice', at: 1 } }, 'application/json works as well')

  const deleted = await api(broker, 'DELETE', `${base}/${id}`, { token: alice, headers: { 'if-match': '4' } })
  t.equal(deleted.status, 204)
  t.equal(deleted.text, '')
  assertError(t, await api(broker, 'GET', `${base}/${id}`, { token: alice }), 'NOT_FOUND', 'GET after DELETE')
  assertError(t, await api(broker, 'DELETE', `${base}/${id}`, { token: alice }), 'NOT_FOUND', 'DELETE twice')
  assertError(t, await api(broker, 'PATCH', `${base}/${id}`, { token: alice, body: {} }), 'NOT_FOUND', 'PATCH a missing object')

  const info = await api(broker, 'GET', '/v1/users/alice/buckets/notes', { token: alice })
  t.strictSame(info.body, { scope: 'users/alice', name: 'notes', eventsTopic: 'users/alice/buckets/notes/events' })

  const dropped = await api(broker, 'DELETE', '/v1/users/me/buckets/notes', { token: alice })
  t.equal(dropped.status, 204)
  t.strictSame((await api(broker, 'GET', base, { token: alice })).body, { objects: [], next: null })
})

t.test('If-Match and If-None-Match', async (t) => {
  const broker = await startBroker(t)
  const path = '/v1/groups/ops/buckets/board/objects/card'
  const create = async (): Promise<ApiResponse> => await api(broker, 'PUT', path, { token: alice, body: { v: 1 }, headers: { 'if-none-match': '*' } })
  t.equal((await create()).status, 201, 'If-None-Match: * creates')
  assertError(t, await create(), 'ALREADY_EXISTS', 'If-None-Match: * on an existing object')

  // two devices read version 1 and both try to write it
  const first = await api(broker, 'PUT', path, { token: alice, body: { v: 2 }, headers: { 'if-match': '1' } })
  const second = await api(broker, 'PUT', path, { token: dave, body: { v: 'lost' }, headers: { 'if-match': '1' } })
  t.equal(first.status, 200)
  assertError(t, second, 'PRECONDITION_FAILED', 'the second writer of version 1')
  assertError(t, await api(broker, 'PATCH', path, { token: dave, body: { v: 'lost' }, headers: { 'if-match': '"1"' } }), 'PRECONDITION_FAILED', 'PATCH with a stale ETag')
  assertError(t, await api(broker, 'DELETE', path, { token: dave, headers: { 'if-match': '1' } }), 'PRECONDITION_FAILED', 'DELETE with a stale version')
  assertError(t, await api(broker, 'PUT', '/v1/groups/ops/buckets/board/objects/nope', { token: dave, body: {}, headers: { 'if-match': '*' } }), 'PRECONDITION_FAILED', 'If-Match: * on a missing object')
  const current = await api(broker, 'GET', path, { token: dave })
  t.match(current.body, { version: 2, body: { v: 2 } }, 'refused writes changed nothing')
  t.equal((await api(broker, 'PUT', path, { token: dave, body: { v: 3 }, headers: { 'if-match': current.headers.get('etag') ?? '' } })).status, 200, 'the ETag works as If-Match')
})

t.test('paging: id order, next cursor, limits', async (t) => {
  const broker = await startBroker(t, { overrides: { buckets: { maxListLimit: 10 } } })
  const base = '/v1/users/bob/buckets/items/objects'
  const ids = Array.from({ length: 23 }, (_, i) => `item-${String(i).padStart(2, '0')}`).reverse()
  for (const id of ids) t.equal((await api(broker, 'PUT', `${base}/${id}`, { token: bob, body: { id } })).status, 201)

  const seen: string[] = []
  let next: string | null = null
  let pages = 0
  do {
    const query: string = next === null ? '?limit=10' : `?limit=10&after=${next}`
    const page: ApiResponse = await api(broker, 'GET', `${base}${query}`, { token: bob })
    t.equal(page.status, 200)
    t.ok(page.body.objects.length <= 10)
    seen.push(...page.body.objects.map((o: { id: string }) => o.id))
    next = page.body.next
    pages++
  } while (next !== null)
  t.equal(pages, 3)
  t.strictSame(seen, [...ids].reverse(), 'every object once, in id order')

  const first = await api(broker, 'GET', base, { token: bob })
  t.equal(first.body.objects.length, 10, 'the default page is min(20, maxListLimit)')
  t.equal(first.body.next, 'item-09')
  t.strictSame(Object.keys(first.body.objects[0]).sort(), objectKeys)
  assertError(t, await api(broker, 'GET', `${base}?limit=11`, { token: bob }), 'INVALID_REQUEST', 'limit over buckets.maxListLimit')
  assertError(t, await api(broker, 'GET', `${base}?limit=0`, { token: bob }), 'INVALID_REQUEST', 'limit 0')
  const after = await api(broker, 'GET', `${base}?after=item-21`, { token: bob })
  t.strictSame(after.body.objects.map((o: { id: string }) => o.id), ['item-22'])
  t.equal(after.body.next, null)
})

t.test('size limits: buckets.maxObjectBytes and http.bodyLimitBytes', async (t) => {
  const broker = await startBroker(t, { overrides: { buckets: { maxObjectBytes: 100 }, http: { bodyLimitBytes: 2048 } } })
  const base = '/v1/users/bob/buckets/b/objects'
  const room = 100 - '{"t":""}'.length
  t.equal((await api(broker, 'PUT', `${base}/fits`, { token: bob, body: { t: 'x'.repeat(room) } })).status, 201, 'exactly maxObjectBytes')
  assertError(t, await api(broker, 'PUT', `${base}/big`, { token: bob, body: { t: 'x'.repeat(room + 1) } }), 'PAYLOAD_TOO_LARGE', 'one byte over')
  assertError(t, await api(broker, 'POST', base, { token: bob, body: { t: 'ü'.repeat(room) } }), 'PAYLOAD_TOO_LARGE', 'counted in UTF-8 bytes')
  assertError(t, await api(broker, 'PATCH', `${base}/fits`, { token: bob, body: { more: 'x' } }), 'PAYLOAD_TOO_LARGE', 'a patch whose result is too large')
  assertError(t, await api(broker, 'POST', base, { token: bob, body: { t: 'x'.repeat(3000) } }), 'PAYLOAD_TOO_LARGE', 'over http.bodyLimitBytes')
  const listed = await api(broker, 'GET', base, { token: bob })
  t.strictSame(listed.body.objects.map((o: { id: string, version: number }) => [o.id, o.version]), [['fits', 1]], 'nothing else was written')
})

t.test('who may do what: user, group and app scopes by role', async (t) => {
  const broker = await startBroker(t)
  // read = list objects; write = create an object
  const can = async (token: string, scope: string): Promise<{ read: number, write: number }> => {
    const read = await api(broker, 'GET', `/v1/${scope}/buckets/b/objects`, { token })
    const write = await api(broker, 'POST', `/v1/${scope}/buckets/b/objects`, { token, body: {} })
    return { read: read.status, write: write.status }
  }
  const rw = { read: 200, write: 201 }
  const forbidden = { read: 403, write: 403 }
  const hidden = { read: 404, write: 404 }
  const readOnly = { read: 200, write: 403 }

  t.strictSame(await can(alice, 'users/alice'), rw, 'user scope: the owner')
  t.strictSame(await can(bob, 'users/alice'), forbidden, 'user scope: another user')
  t.strictSame(await can(dave, 'users/alice'), forbidden, 'user scope: a group mate')
  t.strictSame(await can(service, 'users/alice'), rw, 'user scope: a service')
  t.strictSame(await can(admin, 'users/alice'), rw, 'user scope: an admin')
  t.strictSame(await can(bob, 'users/me'), rw, 'users/me: the caller')

  t.strictSame(await can(alice, 'groups/ops'), rw, 'group scope: a member')
  t.strictSame(await can(dave, 'groups/ops'), rw, 'group scope: another member')
  t.strictSame(await can(bob, 'groups/ops'), forbidden, 'group scope: not a member')
  t.strictSame(await can(service, 'groups/ops'), rw, 'group scope: a service')
  t.strictSame(await can(admin, 'groups/ops'), rw, 'group scope: an admin')

  for (const token of [alice, service, admin]) t.strictSame(await can(token, 'app'), hidden, 'app scope: no bucket before an admin creates it')
  const makeBucket = async (token: string, body: unknown = {}): Promise<ApiResponse> => await api(broker, 'PUT', '/v1/app/buckets/b', { token, body })
  assertError(t, await makeBucket(service), 'NOT_AUTHORIZED', 'a service may not create an app bucket')
  assertError(t, await makeBucket(alice), 'NOT_AUTHORIZED', 'a device may not create an app bucket')
  const made = await makeBucket(admin)
  t.equal(made.status, 201)
  t.strictSame(made.body.acl, { read: ['authenticated'], write: ['role:service', 'role:admin'] }, 'the default ACL')
  t.equal(made.body.eventsTopic, 'app/buckets/b/events')
  t.strictSame(await can(alice, 'app'), readOnly, 'default ACL: devices read')
  t.strictSame(await can(service, 'app'), rw, 'default ACL: services write')
  t.strictSame(await can(admin, 'app'), rw, 'admins write')

  const restricted = await makeBucket(admin, { acl: { read: ['group:ops'], write: ['user:dave'] } })
  t.equal(restricted.status, 200, 'replaced')
  t.strictSame(await can(alice, 'app'), readOnly, 'group:ops reads')
  t.strictSame(await can(dave, 'app'), rw, 'user:dave writes')
  t.strictSame(await can(bob, 'app'), hidden, 'neither read nor write: the bucket is hidden')
  t.strictSame(await can(service, 'app'), hidden, 'a service follows the ACL like anyone')
  t.strictSame(await can(admin, 'app'), rw, 'admins always')

  const listedBy = async (token: string): Promise<string[]> => (await api(broker, 'GET', '/v1/app/buckets', { token })).body.buckets.map((b: { name: string }) => b.name)
  t.strictSame(await listedBy(alice), ['b'])
  t.strictSame(await listedBy(bob), [])
  assertError(t, await api(broker, 'GET', '/v1/app/buckets/b', { token: bob }), 'NOT_FOUND', 'a hidden bucket')
  t.match((await api(broker, 'GET', '/v1/app/buckets/b', { token: alice })).body, { scope: 'app', name: 'b', acl: { read: ['group:ops'], write: ['user:dave'] } })

  assertError(t, await api(broker, 'PUT', '/v1/app/buckets/b', { token: admin, body: {}, headers: { 'if-none-match': '*' } }), 'ALREADY_EXISTS', 'create-only on an existing bucket')

  // deleting buckets
  assertError(t, await api(broker, 'DELETE', '/v1/users/alice/buckets/b', { token: bob }), 'NOT_AUTHORIZED', 'another user’s bucket')
  assertError(t, await api(broker, 'DELETE', '/v1/groups/ops/buckets/b', { token: bob }), 'NOT_AUTHORIZED', 'a group the caller is not in')
  assertError(t, await api(broker, 'DELETE', '/v1/app/buckets/b', { token: dave }), 'NOT_AUTHORIZED', 'an app bucket, by a writer who is not admin')
  t.equal((await api(broker, 'DELETE', '/v1/groups/ops/buckets/b', { token: dave })).status, 204, 'a member deletes a group bucket')
  t.equal((await api(broker, 'DELETE', '/v1/app/buckets/b', { token: admin })).status, 204)
  t.strictSame(await can(admin, 'app'), hidden, 'a deleted app bucket is gone')
  assertError(t, await api(broker, 'DELETE', '/v1/app/buckets/b', { token: admin }), 'NOT_FOUND', 'deleted twice')
  t.equal((await makeBucket(admin)).status, 201, 'and can be created again')
  t.strictSame((await api(broker, 'GET', '/v1/app/buckets/b/objects', { token: admin })).body.objects, [], 'empty')
})

interface BadCase {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly token?: string
  readonly body?: unknown
  readonly headers?: Record<string, string>
  readonly code: ErrorCode
}

t.test('bad input: exact status and code, and nothing written or published', async (t) => {
  const broker = await startBroker(t, { overrides: { buckets: { maxObjectBytes: 256 } } })
  const base = '/v1/users/alice/buckets/notes/objects'
  t.equal((await api(broker, 'PUT', `${base}/kept`, { token: alice, body: { keep: true } })).status, 201)
  t.equal((await api(broker, 'PUT', '/v1/app/buckets/news', { token: admin, body: {} })).status, 201)

  // an admin watching every events topic: the marker below must be the first thing it sees
  const seen: string[] = []
  const watcher = await connect(t, broker.mqttUrl, { clientId: 'watcher', password: admin }, (topic, payload) => { seen.push(`${topic} ${payload.toString()}`) })
  await watcher.subscribeAsync(['+/+/buckets/+/events', 'app/buckets/+/events'], { qos: 1 })

  const cases: BadCase[] = [
    { name: 'malformed JSON', method: 'POST', path: base, body: '{"a": ', code: 'INVALID_JSON' },
    // an empty body is no body, whatever its Content-Type: the object is missing, the JSON is not bad
    { name: 'empty JSON body', method: 'PUT', path: `${base}/x`, body: '', headers: { 'content-type': 'application/json' }, code: 'INVALID_REQUEST' },
    { name: 'malformed merge patch', method: 'PATCH', path: `${base}/kept`, body: '{', headers: { 'content-type': 'application/merge-patch+json' }, code: 'INVALID_JSON' },
    { name: 'no body', method: 'POST', path: base, code: 'INVALID_REQUEST' },
    { name: 'array body', method: 'POST', path: base, body: [1, 2], code: 'INVALID_REQUEST' },
    { name: 'null body', method: 'PUT', path: `${base}/x`, body: 'null', code: 'INVALID_REQUEST' },
    { name: 'string body', method: 'PUT', path: `${base}/x`, body: '"text"', code: 'INVALID_REQUEST' },
    { name: 'number body', method: 'POST', path: base, body: '42', code: 'INVALID_REQUEST' },
    { name: 'array merge patch', method: 'PATCH', path: `${base}/kept`, body: ['x'], code: 'INVALID_REQUEST' },
    { name: 'null merge patch', method: 'PATCH', path: `${base}/kept`, body: 'null', code: 'INVALID_REQUEST' },
    { name: 'text/plain body', method: 'POST', path: base, body: '{}', headers: { 'content-type': 'text/plain' }, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { name: 'oversize object', method: 'PUT', path: `${base}/x`, body: { t: 'x'.repeat(300) }, code: 'PAYLOAD_TOO_LARGE' },
    { name: 'bucket name with a dot', method: 'POST', path: '/v1/users/alice/buckets/a.b/objects', body: {}, code: 'INVALID_REQUEST' },
    { name: 'bucket name too long', method: 'POST', path: `/v1/users/alice/buckets/${'b'.repeat(65)}/objects`, body: {}, code: 'INVALID_REQUEST' },
    { name: 'bucket name with +', method: 'GET', path: '/v1/users/alice/buckets/a+b/objects', code: 'INVALID_REQUEST' },
    { name: 'bucket name with an encoded /', method: 'GET', path: '/v1/users/alice/buckets/a%2Fb/objects', code: 'INVALID_REQUEST' },
    { name: 'object id with a dot', method: 'PUT', path: `${base}/a.b`, body: {}, code: 'INVALID_REQUEST' },
    { name: 'object id too long', method: 'PUT', path: `${base}/${'i'.repeat(129)}`, body: {}, code: 'INVALID_REQUEST' },
    { name: 'object id with unicode', method: 'GET', path: `${base}/%C3%A9`, code: 'INVALID_REQUEST' },
    { name: 'bad ?id= on POST', method: 'POST', path: `${base}?id=a%20b`, body: {}, code: 'INVALID_REQUEST' },
    { name: 'unknown query parameter', method: 'POST', path: `${base}?ttl=5`, body: {}, code: 'INVALID_REQUEST' },
    { name: 'limit not a number', method: 'GET', path: `${base}?limit=many`, code: 'INVALID_REQUEST' },
    { name: 'bad after cursor', method: 'GET', path: `${base}?after=a.b`, code: 'INVALID_REQUEST' },
    { name: 'user id starting with $', method: 'GET', path: '/v1/users/%24SYS/buckets/notes/objects', token: admin, code: 'INVALID_REQUEST' },
    { name: 'group id with #', method: 'GET', path: '/v1/groups/a%23/buckets/notes/objects', token: admin, code: 'INVALID_REQUEST' },
    { name: 'If-Match not a version', method: 'PUT', path: `${base}/kept`, body: {}, headers: { 'if-match': 'W/"1"' }, code: 'INVALID_REQUEST' },
    { name: 'If-None-Match other than *', method: 'PUT', path: `${base}/x`, body: {}, headers: { 'if-none-match': '"1"' }, code: 'INVALID_REQUEST' },
    { name: 'If-None-Match on PATCH', method: 'PATCH', path: `${base}/kept`, body: {}, headers: { 'if-none-match': '*' }, code: 'INVALID_REQUEST' },
    { name: 'If-Match and If-None-Match', method: 'PUT', path: `${base}/kept`, body: {}, headers: { 'if-match': '1', 'if-none-match': '*' }, code: 'INVALID_REQUEST' },
    { name: 'stale If-Match', method: 'DELETE', path: `${base}/kept`, headers: { 'if-match': '9' }, code: 'PRECONDITION_FAILED' },
    { name: 'no token', method: 'POST', path: base, token: '', body: {}, code: 'TOKEN_MISSING' },
    { name: 'app bucket: unknown field', method: 'PUT', path: '/v1/app/buckets/news', token: admin, body: { acl: {}, ttl: 1 }, code: 'INVALID_REQUEST' },
    { name: 'app bucket: bad ACL entry', method: 'PUT', path: '/v1/app/buckets/news', token: admin, body: { acl: { read: ['everyone'] } }, code: 'INVALID_REQUEST' },
    { name: 'app bucket: ACL not a list', method: 'PUT', path: '/v1/app/buckets/news', token: admin, body: { acl: { write: 'role:admin' } }, code: 'INVALID_REQUEST' },
    { name: 'app bucket: bad name', method: 'PUT', path: '/v1/app/buckets/n%20ews', token: admin, body: {}, code: 'INVALID_REQUEST' },
    { name: 'app bucket that does not exist', method: 'POST', path: '/v1/app/buckets/nope/objects', token: admin, body: {}, code: 'NOT_FOUND' },
    { name: 'app bucket write by a device', method: 'POST', path: '/v1/app/buckets/news/objects', token: alice, body: {}, code: 'NOT_AUTHORIZED' },
  ]
  for (const bad of cases) {
    const token = bad.token ?? alice
    const response = await api(broker, bad.method, bad.path, {
      ...(token !== '' && { token }),
      ...(bad.body !== undefined && { body: bad.body }),
      ...(bad.headers !== undefined && { headers: bad.headers }),
    })
    assertError(t, response, bad.code, bad.name)
  }

  const listed = await api(broker, 'GET', base, { token: alice })
  t.strictSame(listed.body.objects.map((o: { id: string, version: number }) => [o.id, o.version]), [['kept', 1]], 'nothing was written')
  t.strictSame((await api(broker, 'GET', '/v1/app/buckets/news', { token: admin })).body.acl, { read: ['authenticated'], write: ['role:service', 'role:admin'] }, 'the app bucket is unchanged')

  const marker = new Promise<void>((resolve) => watcher.on('message', (topic) => { if (topic === 'users/alice/buckets/marker/events') resolve() }))
  t.equal((await api(broker, 'POST', '/v1/users/alice/buckets/marker/objects', { token: alice, body: {} })).status, 201)
  await marker
  t.equal(seen.length, 1, 'the marker is the first event the watcher saw')
  t.match(seen[0], /^users\/alice\/buckets\/marker\/events /)
})

t.test('clients cannot forge events over /v1/publish', async (t) => {
  const broker: TestBroker = await startBroker(t)
  for (const [token, topic] of [[alice, 'users/alice/buckets/notes/events'], [dave, 'groups/ops/buckets/b/events'], [admin, 'app/buckets/news/events'], [service, 'users/alice/buckets/notes/events']] as const) {
    assertError(t, await api(broker, 'POST', '/v1/publish', { token, body: { topic, payload: '{}', qos: 1 } }), 'PUBLISH_DENIED', topic)
  }
  t.equal((await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/buckets/notes', payload: 'fine' } })).status, 202, 'next to it is fine')
})
