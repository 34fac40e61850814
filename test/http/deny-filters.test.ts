import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

// Deny filters (`!filter` in a token's `acl` claim) win over everything, over
// HTTP as over MQTT (issue 14, item 12): the bucket API, direct and
// installation pushes, subscriptions. A bucket is read over MQTT through its
// events topic, so a deny filter covering that topic closes the bucket.

const carol = sign({ sub: 'carol', groups: ['ops'] })
/** In ops, and denied all of it both ways: the token of the issue. */
const frank = sign({ sub: 'frank', groups: ['ops'], acl: { sub: ['!groups/ops/#'], pub: ['!groups/ops/#'] } })
/** In ops, denied publishing there only. */
const gina = sign({ sub: 'gina', groups: ['ops'], acl: { pub: ['!groups/ops/#'] } })
/** In ops, denied reading one bucket's events. */
const hank = sign({ sub: 'hank', groups: ['ops'], acl: { sub: ['!groups/ops/buckets/tasks/events'] } })
/** Denied one bucket of her own. */
const ivy = sign({ sub: 'ivy', acl: { sub: ['!users/%u/buckets/private/#'] } })
/** Denied the events of the app bucket `news`. */
const jill = sign({ sub: 'jill', acl: { sub: ['!app/buckets/news/events'] } })
const service = sign({ sub: 'backend', role: 'service' })
/** A service kept away from app topics and from alice's topics. */
const fencedService = sign({ sub: 'fenced', role: 'service', acl: { pub: ['!app/#', '!users/alice/#'] } })
const admin = sign({ sub: 'root', role: 'admin' })
/** An admin whose token denies publishing under app/buckets/news. */
const fencedAdmin = sign({ sub: 'root2', role: 'admin', acl: { pub: ['!app/buckets/news/#'] } })

/** The SUBACK return codes for `filters` (mqtt.js rejects subscribeAsync on 128). */
async function suback (client: MqttClient, filters: string[]): Promise<number[]> {
  return await new Promise((resolve, reject) => {
    client.subscribe(filters, { qos: 1 }, (err, _granted, packet) => {
      if (packet === undefined) reject(err ?? new Error('no SUBACK'))
      else resolve(packet.granted.map(Number))
    })
  })
}

t.test('deny filters close buckets, pushes and subscriptions over HTTP', async (t) => {
  const broker = await startBroker(t)
  const tasks = '/v1/groups/ops/buckets/tasks'
  const seeded = await api(broker, 'PUT', `${tasks}/objects/o1`, { token: carol, body: { task: 'rotate keys' } })
  t.equal(seeded.status, 201)
  t.equal((await api(broker, 'PUT', '/v1/groups/ops/buckets/notes/objects/n1', { token: carol, body: {} })).status, 201)

  await t.test('the MQTT side: frank may not subscribe to the group', async (t) => {
    const client = await connect(t, broker.mqttUrl, { clientId: 'frank-1', password: frank })
    t.strictSame(await suback(client, ['groups/ops/#', 'groups/ops/buckets/tasks/events']), [128, 128])
  })

  await t.test('group buckets', async (t) => {
    const rows: Array<[string, string, string, string, unknown, number]> = [
      // who, name, method, path, body, status
      ['frank', frank, 'GET', `${tasks}/objects/o1`, undefined, 403],
      ['frank', frank, 'GET', `${tasks}/objects`, undefined, 403],
      ['frank', frank, 'GET', tasks, undefined, 403],
      ['frank', frank, 'PUT', `${tasks}/objects/o1`, { task: 'mine now' }, 403],
      ['frank', frank, 'PUT', `${tasks}/objects/o2`, { task: 'new' }, 403],
      ['frank', frank, 'POST', `${tasks}/objects`, { task: 'new' }, 403],
      ['frank', frank, 'PATCH', `${tasks}/objects/o1`, { task: 'patched' }, 403],
      ['frank', frank, 'DELETE', `${tasks}/objects/o1`, undefined, 403],
      ['frank', frank, 'DELETE', tasks, undefined, 403],
      // pub denied only: reads, never writes
      ['gina', gina, 'GET', `${tasks}/objects/o1`, undefined, 200],
      ['gina', gina, 'PUT', `${tasks}/objects/o1`, { task: 'mine now' }, 403],
      ['gina', gina, 'DELETE', tasks, undefined, 403],
      // one bucket's events denied: that bucket closed (a write answers with the object), the others open
      ['hank', hank, 'GET', `${tasks}/objects/o1`, undefined, 403],
      ['hank', hank, 'PUT', `${tasks}/objects/o1`, { task: 'mine now' }, 403],
      ['hank', hank, 'GET', '/v1/groups/ops/buckets/notes/objects/n1', undefined, 200],
      // a member without deny filters
      ['carol', carol, 'GET', `${tasks}/objects/o1`, undefined, 200],
    ]
    for (const [who, token, method, path, body, status] of rows) {
      const response = await api(broker, method, path, { token, ...(body !== undefined && { body }) })
      t.equal(response.status, status, `${who} ${method} ${path}: ${status}`)
      if (status === 403) t.equal(response.body.error.code, 'NOT_AUTHORIZED')
    }
    const after = await api(broker, 'GET', `${tasks}/objects/o1`, { token: carol })
    t.match(after.body, { version: 1, body: { task: 'rotate keys' } }, 'no refused write changed the object')
    t.equal((await api(broker, 'GET', `${tasks}/objects/o2`, { token: carol })).status, 404, 'nor created one')
  })

  await t.test('user buckets', async (t) => {
    t.equal((await api(broker, 'PUT', '/v1/users/me/buckets/notes/objects/a', { token: ivy, body: {} })).status, 201, 'her other buckets are hers')
    const denied = await api(broker, 'PUT', '/v1/users/me/buckets/private/objects/a', { token: ivy, body: {} })
    t.equal(denied.status, 403)
    t.equal(denied.body.error.code, 'NOT_AUTHORIZED')
    t.equal((await api(broker, 'GET', '/v1/users/ivy/buckets/private/objects', { token: ivy })).status, 403)
    t.equal((await api(broker, 'PUT', '/v1/users/ivy/buckets/private/objects/a', { token: service, body: {} })).status, 201, 'her deny filters are hers, not the service\'s')
  })

  await t.test('app buckets', async (t) => {
    t.equal((await api(broker, 'PUT', '/v1/app/buckets/news', { token: admin, body: {} })).status, 201)
    t.equal((await api(broker, 'PUT', '/v1/app/buckets/news/objects/launch', { token: service, body: { headline: 'x' } })).status, 201)
    const hidden = await api(broker, 'GET', '/v1/app/buckets/news/objects/launch', { token: jill })
    t.equal(hidden.status, 404, 'neither readable nor writable: as if it did not exist')
    t.equal(hidden.body.error.code, 'NOT_FOUND')
    t.strictSame((await api(broker, 'GET', '/v1/app/buckets', { token: jill })).body.buckets, [], 'not listed')
    t.equal((await api(broker, 'GET', '/v1/app/buckets/news/objects/launch', { token: fencedService })).status, 200, 'pub denied: reads')
    t.equal((await api(broker, 'PUT', '/v1/app/buckets/news/objects/launch', { token: fencedService, body: {} })).status, 403, 'pub denied: no writes')
    t.equal((await api(broker, 'DELETE', '/v1/app/buckets/news', { token: fencedAdmin })).status, 403, 'an admin\'s deny filters bind the admin')
    t.equal((await api(broker, 'GET', '/v1/app/buckets/news/objects/launch', { token: admin })).status, 200, 'still there')
  })

  await t.test('direct and installation pushes publish under the caller\'s deny filters', async (t) => {
    const alice = sign({ sub: 'alice' })
    const created = await api(broker, 'POST', '/v1/installations', { token: alice, body: {} })
    t.equal(created.status, 201)
    for (const to of [{ user: 'alice' }, { installation: created.body.installationId as string }, { topic: 'users/alice/x' }]) {
      const refused = await api(broker, 'POST', '/v1/push', { token: fencedService, body: { to, data: { k: 'v' } } })
      t.equal(refused.status, 403, `push to ${JSON.stringify(to)}: 403`)
      t.equal(refused.body.error.code, 'PUBLISH_DENIED')
      t.equal((await api(broker, 'POST', '/v1/push', { token: service, body: { to, data: { k: 'v' } } })).status, 202, 'another service may')
    }
  })

  await t.test('subscriptions', async (t) => {
    for (const filter of ['groups/ops/buckets/tasks/events', 'groups/ops/%23']) {
      const refused = await api(broker, 'PUT', `/v1/users/me/subscriptions/${filter}`, { token: frank })
      t.equal(refused.status, 403, `frank subscribes to ${filter}: 403`)
      t.equal(refused.body.error.code, 'SUBSCRIBE_DENIED')
    }
  })
})
