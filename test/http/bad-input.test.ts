import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

/**
 * Every bad request gets its exact status and stable code, and none of them
 * publishes anything: an admin client subscribed to `#` for the whole test must
 * see the closing marker as its first and only message.
 */

const BODY_LIMIT = 16384
const MAX_PACKET = 1024

interface BadCase {
  readonly name: string
  readonly method: string
  readonly path: string
  /** 'none' sends no Authorization header; a string is sent as the bearer token; default: a service token. */
  readonly token?: 'none' | string
  readonly body?: unknown
  readonly headers?: Record<string, string>
  readonly status: number
  readonly code: string
}

const service = sign({ sub: 'svc', role: 'service' })
const admin = sign({ sub: 'root', role: 'admin' })
const device = sign({ sub: 'alice', groups: ['g1'] })
const expired = sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 3600 })
const wrongKey = sign({ sub: 'alice' }, { secret: 'another-secret-that-is-at-least-32-bytes' })

const note = { title: 'hi' }
const long = (n: number): string => 'x'.repeat(n)

const cases: BadCase[] = [
  // body parsing
  { name: 'malformed JSON', method: 'POST', path: '/v1/publish', body: '{"topic": "users/svc/x", ', status: 400, code: 'INVALID_JSON' },
  // an empty body is no body, whatever its Content-Type (test/http/empty-body.test.ts)
  { name: 'empty JSON body', method: 'POST', path: '/v1/publish', body: '', headers: { 'content-type': 'application/json' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'text/plain body', method: 'POST', path: '/v1/publish', body: JSON.stringify({ topic: 'users/svc/x', payload: 'p' }), headers: { 'content-type': 'text/plain' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'XML body', method: 'POST', path: '/v1/push', body: '<push/>', headers: { 'content-type': 'application/xml' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'form body', method: 'POST', path: '/v1/publish', body: 'topic=users%2Fsvc%2Fx&payload=p', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'body over http.bodyLimitBytes', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: long(BODY_LIMIT + 1) }, status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'body is a JSON array', method: 'POST', path: '/v1/publish', body: [{ topic: 'users/svc/x', payload: 'p' }], status: 400, code: 'INVALID_REQUEST' },

  // publish: types and encodings
  { name: 'publish without payload', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'publish without topic', method: 'POST', path: '/v1/publish', body: { payload: 'p' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'qos as a string', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'p', qos: '1' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'qos 2', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'p', qos: 2 }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'retain as a string', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'p', retain: 'yes' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'unknown encoding', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'p', encoding: 'hex' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'object payload with utf8', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: { a: 1 }, encoding: 'utf8' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'object payload, default encoding', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: { a: 1 } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'number payload with base64', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 42, encoding: 'base64' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'bad base64 characters', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'a!b$', encoding: 'base64' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'base64 of the wrong length', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'abcde', encoding: 'base64' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'publish payload over limits.maxPacketBytes', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: long(MAX_PACKET + 1) }, status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'publish unknown top-level field', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/x', payload: 'p', dup: true }, status: 400, code: 'INVALID_REQUEST' },

  // publish: topics
  { name: 'publish to +', method: 'POST', path: '/v1/publish', body: { topic: 'users/+/x', payload: 'p' }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'publish to #', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/#', payload: 'p' }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'publish to an empty topic', method: 'POST', path: '/v1/publish', body: { topic: '', payload: 'p' }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'publish to a topic with NUL', method: 'POST', path: '/v1/publish', body: { topic: 'users/svc/a\u0000b', payload: 'p' }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'publish to a topic over limits.maxTopicLength', method: 'POST', path: '/v1/publish', body: { topic: `users/svc/${long(256)}`, payload: 'p' }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'publish to a topic over limits.maxTopicLevels', method: 'POST', path: '/v1/publish', body: { topic: `users/svc/${Array(15).fill('l').join('/')}`, payload: 'p' }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'publish to a $ topic, even as admin', method: 'POST', path: '/v1/publish', token: admin, body: { topic: '$SYS/x', payload: 'p' }, status: 403, code: 'PUBLISH_DENIED' },

  // push: content rules
  { name: 'push with neither notification nor data', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'push with an empty notification and empty data', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: {}, data: {} }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'nested data', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, data: { k: { x: 1 } } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'data value a number', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, data: { k: 1 } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'data value null', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, data: { k: null } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'data is an array', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, data: ['a'] }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'reserved data key google.x', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, data: { 'google.x': 'v' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'reserved data key from', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, data: { from: 'v' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'reserved data key gcm.x', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, data: { 'gcm.notification.x': 'v' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'notification + data over 4096 bytes', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: { title: 't', body: long(4000) }, data: { k: long(200) } }, status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'notification title not a string', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: { title: 1 } }, status: 400, code: 'INVALID_REQUEST' },

  // push: unknown fields and wrong types
  { name: 'push unknown top-level field', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, priority: 'high' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'notification.subtitle', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: { title: 't', subtitle: 's' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'mqtt.retain', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, mqtt: { retain: true } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'mqtt.qos 2', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, mqtt: { qos: 2 } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'mqtt.enabled as a string', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, mqtt: { enabled: 'false' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'fcm.priority unknown', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, fcm: { priority: 'urgent' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'fcm unknown field', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, fcm: { android: {} } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'apns.priority 7', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, apns: { priority: 7 } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'apns.badge negative', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, apns: { badge: -1 } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ttl negative', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, ttl: -1 }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ttl as a string', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x' }, notification: note, ttl: '60' }, status: 400, code: 'INVALID_REQUEST' },

  // push: targets
  { name: 'push without to', method: 'POST', path: '/v1/push', body: { notification: note }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'push to two targets', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/svc/x', user: 'alice' }, notification: note }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'push to an unknown kind of target', method: 'POST', path: '/v1/push', body: { to: { group: 'g1' }, notification: note }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'push to a user id with /', method: 'POST', path: '/v1/push', body: { to: { user: 'a/b' }, notification: note }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'push to a topic with +', method: 'POST', path: '/v1/push', body: { to: { topic: 'users/+/x' }, notification: note }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'push to a topic with #', method: 'POST', path: '/v1/push', body: { to: { topic: '#' }, notification: note }, status: 400, code: 'TOPIC_INVALID' },
  { name: 'push to an empty topic', method: 'POST', path: '/v1/push', body: { to: { topic: '' }, notification: note }, status: 400, code: 'TOPIC_INVALID' },

  // app topics
  { name: 'topic name with an encoded /', method: 'PUT', path: '/v1/topics/a%2Fb', token: admin, body: {}, status: 400, code: 'INVALID_REQUEST' },
  { name: 'topic name of 65 characters', method: 'PUT', path: `/v1/topics/${long(65)}`, token: admin, body: {}, status: 400, code: 'INVALID_REQUEST' },
  { name: 'topic name with a space', method: 'PUT', path: '/v1/topics/bad%20name', token: admin, body: {}, status: 400, code: 'INVALID_REQUEST' },
  { name: 'topic name with +', method: 'PUT', path: '/v1/topics/a%2B', token: admin, body: {}, status: 400, code: 'INVALID_REQUEST' },
  { name: 'GET of a bad topic name', method: 'GET', path: '/v1/topics/bad%20name', token: admin, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ACL entry of an unknown kind', method: 'PUT', path: '/v1/topics/news', token: admin, body: { acl: { publish: ['everyone'] } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ACL entry user: without an id', method: 'PUT', path: '/v1/topics/news', token: admin, body: { acl: { subscribe: ['user:'] } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ACL entry of an unknown role', method: 'PUT', path: '/v1/topics/news', token: admin, body: { acl: { publish: ['role:root'] } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ACL entry with a wildcard id', method: 'PUT', path: '/v1/topics/news', token: admin, body: { acl: { subscribe: ['group:+'] } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ACL list not an array', method: 'PUT', path: '/v1/topics/news', token: admin, body: { acl: { subscribe: 'authenticated' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'ACL unknown action', method: 'PUT', path: '/v1/topics/news', token: admin, body: { acl: { delete: ['authenticated'] } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'topic body unknown field', method: 'PUT', path: '/v1/topics/news', token: admin, body: { retain: true }, status: 400, code: 'INVALID_REQUEST' },

  // installations
  { name: 'pushToken of an unknown provider', method: 'POST', path: '/v1/installations', token: device, body: { pushToken: { provider: 'gcm', token: 'abc' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'pushToken with an empty token', method: 'POST', path: '/v1/installations', token: device, body: { pushToken: { provider: 'fcm', token: '' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'pushToken of an unknown environment', method: 'POST', path: '/v1/installations', token: device, body: { pushToken: { provider: 'apns', token: 'abc', environment: 'staging' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'pushToken unknown field', method: 'POST', path: '/v1/installations', token: device, body: { pushToken: { provider: 'fcm', token: 'abc', platform: 'android' } }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'installation unknown field', method: 'POST', path: '/v1/installations', token: device, body: { clientId: 'mine' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'installation mqtt as a string', method: 'POST', path: '/v1/installations', token: device, body: { mqtt: 'no' }, status: 400, code: 'INVALID_REQUEST' },
  { name: 'installation for a user id with #', method: 'POST', path: '/v1/installations', body: { user: 'a#' }, status: 400, code: 'INVALID_REQUEST' },

  // authentication
  { name: 'no Authorization header', method: 'POST', path: '/v1/publish', token: 'none', body: { topic: 'users/svc/x', payload: 'p' }, status: 401, code: 'TOKEN_MISSING' },
  { name: 'Basic instead of Bearer', method: 'POST', path: '/v1/publish', token: 'none', headers: { authorization: 'Basic c3ZjOnB3' }, body: { topic: 'users/svc/x', payload: 'p' }, status: 401, code: 'TOKEN_MISSING' },
  { name: 'a token that is not a JWT', method: 'POST', path: '/v1/publish', token: 'not-a-jwt', body: { topic: 'users/svc/x', payload: 'p' }, status: 401, code: 'TOKEN_INVALID' },
  { name: 'a token signed with another key', method: 'POST', path: '/v1/publish', token: wrongKey, body: { topic: 'users/alice/x', payload: 'p' }, status: 401, code: 'TOKEN_INVALID' },
  { name: 'an expired token', method: 'POST', path: '/v1/publish', token: expired, body: { topic: 'users/alice/x', payload: 'p' }, status: 401, code: 'TOKEN_EXPIRED' },
  { name: 'no token on a GET', method: 'GET', path: '/v1/installations', token: 'none', status: 401, code: 'TOKEN_MISSING' },

  // routing
  { name: 'unknown route under /v1', method: 'GET', path: '/v1/nope', status: 404, code: 'NOT_FOUND' },
  { name: 'unknown route without a token', method: 'GET', path: '/nope', token: 'none', status: 404, code: 'NOT_FOUND' },
  { name: 'known path, unknown method', method: 'DELETE', path: '/v1/publish', status: 404, code: 'NOT_FOUND' },
]

t.test('bad requests get their status and code, and publish nothing', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { bodyLimitBytes: BODY_LIMIT }, limits: { maxPacketBytes: MAX_PACKET } } })

  const spy = await connect(t, broker.mqttUrl, { clientId: 'spy', password: admin })
  const seen: Array<{ topic: string, payload: string }> = []
  let markerArrived: () => void = () => {}
  const marker = new Promise<void>((resolve) => { markerArrived = resolve })
  spy.on('message', (topic, payload) => {
    seen.push({ topic, payload: payload.toString() })
    if (topic === 'spy/marker') markerArrived()
  })
  const granted = await spy.subscribeAsync('#', { qos: 1 })
  t.strictSame(granted.map((g) => g.qos), [1], 'the admin spy may subscribe to #')

  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const token = c.token ?? service
      const response = await api(broker, c.method, c.path, {
        ...(token !== 'none' && { token }),
        ...(c.body !== undefined && { body: c.body }),
        ...(c.headers !== undefined && { headers: c.headers }),
      })
      t.equal(response.status, c.status, 'status')
      t.match(response.headers.get('content-type') ?? '', /^application\/json/, 'a JSON error body')
      t.same(Object.keys(response.body ?? {}), ['error'], 'only an error member')
      t.equal(response.body?.error?.code, c.code, `code (message: ${String(response.body?.error?.message)})`)
      t.type(response.body?.error?.message, 'string')
      t.not(response.body?.error?.message, '', 'a message')
    })
  }

  // nothing above was published: the marker is the first and only message the spy sees
  const published = await api(broker, 'POST', '/v1/publish', { token: admin, body: { topic: 'spy/marker', payload: 'marker' } })
  t.equal(published.status, 202)
  await marker
  t.strictSame(seen, [{ topic: 'spy/marker', payload: 'marker' }], 'nothing but the marker was published')
})
