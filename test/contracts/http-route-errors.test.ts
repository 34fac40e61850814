import t from 'tap'
import type { ErrorCode } from '../../src/errors/index.js'
import { sign } from '../helpers/broker.js'
import { assertError, buildRouteApp, type CallOptions } from '../helpers/route-app.js'

/**
 * Refusals of the installation, subscription, topic and app bucket routes that
 * test/http/ does not cover, through fastify's inject() (no socket): each gets
 * its status and stable code, and changes nothing. (Publish, push, bucket
 * objects and most role checks: test/http/bad-input, buckets and acl-matrix.)
 */

const alice = sign({ sub: 'alice', groups: ['g1'] })
const service = sign({ sub: 'backend', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })

interface Refusal {
  readonly name: string
  readonly method: string
  readonly path: string
  readonly options?: CallOptions
  readonly code: ErrorCode
}

t.test('installation and subscription routes: bad input, unknown ids, the inbox', async (t) => {
  const api = await buildRouteApp(t)
  const created = await api.call('POST', '/v1/installations', { token: alice, body: {} })
  t.equal(created.status, 201)
  const id = created.body.installationId as string
  const item = `/v1/installations/${id}`
  const subs = `${item}/subscriptions`
  t.equal((await api.call('PUT', `${subs}/users/alice/news?qos=0`, { token: alice })).status, 200)
  const before = await api.call('GET', item, { token: alice })

  const refusals: Refusal[] = [
    // the path
    { name: 'an installation id over 128 characters', method: 'GET', path: `/v1/installations/${'i'.repeat(129)}`, code: 'INVALID_REQUEST' },
    { name: 'GET of an unknown installation', method: 'GET', path: '/v1/installations/nope', code: 'NOT_FOUND' },
    { name: 'PATCH of an unknown installation', method: 'PATCH', path: '/v1/installations/nope', options: { body: { mqtt: false } }, code: 'NOT_FOUND' },
    { name: 'DELETE of an unknown installation', method: 'DELETE', path: '/v1/installations/nope', code: 'NOT_FOUND' },
    { name: 'subscriptions of an unknown installation', method: 'GET', path: '/v1/installations/nope/subscriptions', code: 'NOT_FOUND' },
    { name: 'subscribing an unknown installation', method: 'PUT', path: '/v1/installations/nope/subscriptions/users/alice/x', code: 'NOT_FOUND' },
    // PATCH bodies
    { name: 'PATCH with an unknown field', method: 'PATCH', path: item, options: { body: { user: 'bob' } }, code: 'INVALID_REQUEST' },
    { name: 'PATCH mqtt as a string', method: 'PATCH', path: item, options: { body: { mqtt: 'no' } }, code: 'INVALID_REQUEST' },
    { name: 'PATCH pushToken without its token', method: 'PATCH', path: item, options: { body: { pushToken: { provider: 'fcm' } } }, code: 'INVALID_REQUEST' },
    { name: 'PATCH pushToken of an unknown provider', method: 'PATCH', path: item, options: { body: { pushToken: { provider: 'wns', token: 't' } } }, code: 'INVALID_REQUEST' },
    { name: 'PATCH with a malformed body', method: 'PATCH', path: item, options: { body: '{"mqtt": ' }, code: 'INVALID_JSON' },
    // subscription filters and the query
    { name: 'subscribe at QoS 2', method: 'PUT', path: `${subs}/users/alice/x?qos=2`, code: 'INVALID_REQUEST' },
    { name: 'subscribe with a QoS that is not a number', method: 'PUT', path: `${subs}/users/alice/x?qos=high`, code: 'INVALID_REQUEST' },
    { name: 'subscribe with an unknown query parameter', method: 'PUT', path: `${subs}/users/alice/x?retain=1`, code: 'INVALID_REQUEST' },
    { name: 'unsubscribe a filter with # before its last level', method: 'DELETE', path: `${subs}/users/%23/x`, code: 'TOPIC_INVALID' },
    { name: 'unsubscribe a filter with + inside a level', method: 'DELETE', path: `${subs}/users/alice/x%2B`, code: 'TOPIC_INVALID' },
    { name: 'unsubscribe the owner’s inbox', method: 'DELETE', path: `${subs}/users/alice/inbox`, code: 'NOT_AUTHORIZED' },
    { name: 'subscribe every installation at QoS 2', method: 'PUT', path: '/v1/users/me/subscriptions/users/alice/x?qos=2', code: 'INVALID_REQUEST' },
  ]
  for (const refusal of refusals) {
    assertError(t, await api.call(refusal.method, refusal.path, { token: alice, ...refusal.options }), refusal.code, refusal.name)
  }

  t.strictSame((await api.call('GET', item, { token: alice })).body, before.body, 'the installation is unchanged')
  t.strictSame((await api.call('GET', subs, { token: alice })).body.subscriptions.map((s: { topic: string, qos: number }) => `${s.topic} ${s.qos}`).sort(),
    ['users/alice/inbox 1', 'users/alice/news 0'], 'its subscriptions are unchanged, the inbox kept')
})

t.test('a role check comes before any lookup: 403 for a topic or app bucket that does not exist either', async (t) => {
  const api = await buildRouteApp(t)
  const refusals: Array<Refusal & { readonly token: string }> = [
    { name: 'a device deletes an absent topic', method: 'DELETE', path: '/v1/topics/absent', token: alice, code: 'NOT_AUTHORIZED' },
    { name: 'a service deletes an absent topic', method: 'DELETE', path: '/v1/topics/absent', token: service, code: 'NOT_AUTHORIZED' },
    { name: 'a device creates a topic only if absent', method: 'PUT', path: '/v1/topics/absent', token: alice, options: { body: {}, headers: { 'if-none-match': '*' } }, code: 'NOT_AUTHORIZED' },
    { name: 'a device deletes an absent app bucket', method: 'DELETE', path: '/v1/app/buckets/absent', token: alice, code: 'NOT_AUTHORIZED' },
    { name: 'a service deletes an absent app bucket', method: 'DELETE', path: '/v1/app/buckets/absent', token: service, code: 'NOT_AUTHORIZED' },
  ]
  for (const refusal of refusals) {
    assertError(t, await api.call(refusal.method, refusal.path, { token: refusal.token, ...refusal.options }), refusal.code, refusal.name)
  }
  // the same requests from an admin reach the lookup
  assertError(t, await api.call('DELETE', '/v1/topics/absent', { token: admin }), 'NOT_FOUND', 'an admin deletes an absent topic')
  assertError(t, await api.call('DELETE', '/v1/app/buckets/absent', { token: admin }), 'NOT_FOUND', 'an admin deletes an absent app bucket')
  t.strictSame((await api.call('GET', '/v1/topics', { token: admin })).body, { topics: [] }, 'no topic was made')
})
