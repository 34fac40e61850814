import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connect, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api, type ApiResponse } from '../helpers/http.js'

/**
 * Who may do what over HTTP, route by route (README "Topics and who may use
 * them"). An admin client subscribed to `#` checks that every allowed publish
 * or push really went out and that no refused one did.
 */

const tokens = {
  /** device owner, member of g1 */
  alice: sign({ sub: 'alice', groups: ['g1'] }),
  /** another device, in no group */
  bob: sign({ sub: 'bob' }),
  /** a device in group ops */
  carol: sign({ sub: 'carol', groups: ['ops'] }),
  /** a device whose token carries grants: deny filters and extra allow filters */
  dave: sign({ sub: 'dave', acl: { pub: ['!users/%u/secret', 'lab/%u/#'], sub: ['!users/%u/private/#', '!app/open', 'lab/%u/#'] } }),
  svc: sign({ sub: 'backend', role: 'service' }),
  admin: sign({ sub: 'root', role: 'admin' }),
}
type Who = keyof typeof tokens

interface Seen { readonly topic: string, readonly payload: string }

/** Records every message a client gets, and lets a test wait for one of them. */
function spyOn (client: MqttClient): { seen: Seen[], waitFor: (match: (m: Seen) => boolean) => Promise<Seen> } {
  const seen: Seen[] = []
  const waiters = new Set<{ match: (m: Seen) => boolean, resolve: (m: Seen) => void }>()
  client.on('message', (topic, payload) => {
    const m = { topic, payload: payload.toString() }
    seen.push(m)
    for (const waiter of waiters) {
      if (waiter.match(m)) {
        waiters.delete(waiter)
        waiter.resolve(m)
      }
    }
  })
  return {
    seen,
    waitFor: async (match) => {
      const already = seen.find(match)
      if (already !== undefined) return already
      return await new Promise((resolve) => waiters.add({ match, resolve }))
    },
  }
}

const filterPath = (filter: string): string => filter.replaceAll('#', '%23').replaceAll('+', '%2B')

t.test('HTTP allow/deny matrix by role', async (t) => {
  const broker: TestBroker = await startBroker(t)
  const call = async (who: Who, method: string, path: string, body?: unknown): Promise<ApiResponse> =>
    await api(broker, method, path, { token: tokens[who], ...(body !== undefined && { body }) })

  const spyClient = await connect(t, broker.mqttUrl, { clientId: 'acl-spy', password: tokens.admin })
  const spy = spyOn(spyClient)
  t.strictSame((await spyClient.subscribeAsync('#', { qos: 1 })).map((g) => g.qos), [1])

  // every tag of an accepted publish or push; refused ones must never reach the spy
  const allowedTags: string[] = []
  const refusedTags: string[] = []
  let serial = 0
  const nextTag = (): string => `<tag-${++serial}>`

  // app topics: `open` has the default ACL, `custom` and `devices` their own; `absent` is never created
  for (const [name, body] of [
    ['open', {}],
    ['custom', { acl: { publish: ['user:bob', 'group:ops'], subscribe: ['user:bob', 'group:ops'] } }],
    ['devices', { acl: { publish: ['role:device'], subscribe: ['role:service'] } }],
  ] as const) {
    const created = await call('admin', 'PUT', `/v1/topics/${name}`, body)
    t.equal(created.status, 201, `app/${name} created`)
  }
  t.strictSame((await call('admin', 'GET', '/v1/topics/open')).body.acl, { subscribe: ['authenticated'], publish: ['role:service', 'role:admin'] }, 'the default ACL')

  await t.test('POST /v1/publish', async (t) => {
    const rows: Array<[Who, string, 202 | 403]> = [
      ['alice', 'users/alice/x', 202],
      ['alice', 'users/alice/a/b/c', 202],
      ['alice', 'users/bob/x', 403],
      ['alice', 'users/alice/inbox', 403],
      ['bob', 'users/alice/inbox', 403],
      ['svc', 'users/alice/inbox', 202],
      ['svc', 'users/alice/x', 202],
      ['admin', 'users/alice/inbox', 202],
      ['alice', 'groups/g1/x', 202],
      ['bob', 'groups/g1/x', 403],
      ['alice', 'groups/g2/x', 403],
      ['svc', 'groups/g1/x', 403],
      ['admin', 'groups/g1/x', 202],
      // an app topic that does not exist: nobody but admin
      ['alice', 'app/absent', 403],
      ['svc', 'app/absent', 403],
      ['admin', 'app/absent', 202],
      // the default ACL: service and admin publish
      ['alice', 'app/open', 403],
      ['bob', 'app/open', 403],
      ['svc', 'app/open', 202],
      ['admin', 'app/open', 202],
      ['svc', 'app/open/deeper', 403],
      // custom entries: user:bob, group:ops
      ['bob', 'app/custom', 202],
      ['carol', 'app/custom', 202],
      ['alice', 'app/custom', 403],
      ['svc', 'app/custom', 403],
      ['admin', 'app/custom', 202],
      // role:device
      ['alice', 'app/devices', 202],
      ['svc', 'app/devices', 403],
      // outside the namespace: grants only (admin publishes anywhere but $)
      ['alice', 'elsewhere/x', 403],
      ['svc', 'elsewhere/x', 403],
      ['admin', 'elsewhere/x', 202],
      ['admin', '$SYS/x', 403],
      // token grants: a deny wins over the table, an allow opens a topic outside it
      ['dave', 'users/dave/x', 202],
      ['dave', 'users/dave/secret', 403],
      ['dave', 'lab/dave/x', 202],
      ['dave', 'lab/alice/x', 403],
      ['alice', 'lab/alice/x', 403],
    ]
    for (const [who, topic, status] of rows) {
      const tag = nextTag()
      const response = await call(who, 'POST', '/v1/publish', { topic, payload: tag })
      t.equal(response.status, status, `${who} publishes to ${topic}: ${status}`)
      if (status === 202) {
        allowedTags.push(tag)
        const got = await spy.waitFor((m) => m.payload === tag)
        t.equal(got.topic, topic, `${topic} was delivered`)
      } else {
        refusedTags.push(tag)
        t.equal(response.body.error.code, 'PUBLISH_DENIED', `${who} → ${topic}: PUBLISH_DENIED`)
      }
    }
  })

  // installations used below
  const install = async (who: Who, body: Record<string, unknown> = {}): Promise<string> => {
    const response = await call(who, 'POST', '/v1/installations', body)
    t.equal(response.status, 201, `${who} registers an installation`)
    return response.body.installationId as string
  }
  const aliceInstallation = await install('alice')
  const bobInstallation = await install('bob')
  const daveInstallation = await install('dave')

  await t.test('POST /v1/push', async (t) => {
    const push = async (who: Who, to: Record<string, string>, status: number, code?: string): Promise<void> => {
      const tag = nextTag()
      const response = await call(who, 'POST', '/v1/push', { to, data: { tag } })
      const what = `${who} pushes to ${JSON.stringify(to)}`
      t.equal(response.status, status, `${what}: ${status}`)
      if (code !== undefined) t.equal(response.body.error.code, code, `${what}: ${code}`)
      if (status !== 202) {
        refusedTags.push(tag)
        return
      }
      t.type(response.body.id, 'string')
      // a push to one installation goes to that client id only, never through topic routing
      if ('installation' in to) return
      allowedTags.push(tag)
      const got = await spy.waitFor((m) => m.payload.includes(tag))
      const topic = 'user' in to ? `users/${to.user as string}/inbox` : to.topic
      t.equal(got.topic, topic, `${what}: delivered on ${topic as string}`)
      const envelope = JSON.parse(got.payload) as { id: string, data: Record<string, string> }
      t.equal(envelope.id, response.body.id, 'the envelope carries the id the API returned')
    }

    await push('alice', { user: 'alice' }, 403, 'NOT_AUTHORIZED')
    await push('alice', { user: 'bob' }, 403, 'NOT_AUTHORIZED')
    await push('svc', { user: 'alice' }, 202)
    await push('admin', { user: 'bob' }, 202)

    await push('alice', { installation: bobInstallation }, 404, 'NOT_FOUND')
    await push('bob', { installation: aliceInstallation }, 404, 'NOT_FOUND')
    await push('alice', { installation: 'no-such-installation' }, 404, 'NOT_FOUND')
    await push('alice', { installation: aliceInstallation }, 202)
    await push('svc', { installation: aliceInstallation }, 202)
    await push('admin', { installation: bobInstallation }, 202)

    await push('alice', { topic: 'users/bob/x' }, 403, 'PUBLISH_DENIED')
    await push('alice', { topic: 'users/alice/inbox' }, 403, 'PUBLISH_DENIED')
    await push('alice', { topic: 'users/alice/x' }, 202)
    await push('alice', { topic: 'app/open' }, 403, 'PUBLISH_DENIED')
    await push('svc', { topic: 'app/open' }, 202)
    await push('svc', { topic: 'app/absent' }, 403, 'PUBLISH_DENIED')
    await push('carol', { topic: 'app/custom' }, 202)
    await push('bob', { topic: 'groups/g1/news' }, 403, 'PUBLISH_DENIED')
    await push('alice', { topic: 'groups/g1/news' }, 202)
    await push('dave', { topic: 'users/dave/secret' }, 403, 'PUBLISH_DENIED')
  })

  await t.test('app topics', async (t) => {
    for (const who of ['alice', 'svc'] as const) {
      const put = await call(who, 'PUT', '/v1/topics/mine', {})
      t.equal(put.status, 403, `${who} may not create a topic`)
      t.equal(put.body.error.code, 'NOT_AUTHORIZED')
      const replace = await call(who, 'PUT', '/v1/topics/open', { acl: { publish: ['authenticated'] } })
      t.equal(replace.status, 403, `${who} may not replace a topic's ACL`)
      t.equal(replace.body.error.code, 'NOT_AUTHORIZED')
      const del = await call(who, 'DELETE', '/v1/topics/open')
      t.equal(del.status, 403, `${who} may not delete a topic`)
      t.equal(del.body.error.code, 'NOT_AUTHORIZED')
    }
    t.equal((await call('admin', 'GET', '/v1/topics/mine')).status, 404, 'nothing was created')
    t.strictSame((await call('admin', 'GET', '/v1/topics/open')).body.acl.publish, ['role:service', 'role:admin'], 'the ACL is unchanged')

    // a topic the caller may not subscribe to does not exist for it
    const gets: Array<[Who, string, 200 | 404]> = [
      ['alice', 'open', 200],
      ['alice', 'custom', 404],
      ['alice', 'devices', 404],
      ['alice', 'absent', 404],
      ['bob', 'custom', 200],
      ['carol', 'custom', 200],
      ['svc', 'custom', 404],
      ['svc', 'devices', 200],
      ['admin', 'custom', 200],
      ['admin', 'devices', 200],
      ['dave', 'open', 404], // `!app/open` in the token
    ]
    for (const [who, name, status] of gets) {
      const response = await call(who, 'GET', `/v1/topics/${name}`)
      t.equal(response.status, status, `${who} GET /v1/topics/${name}: ${status}`)
      if (status === 404) t.equal(response.body.error.code, 'NOT_FOUND')
      else t.equal(response.body.mqttTopic, `app/${name}`)
    }

    const lists: Array<[Who, string[]]> = [
      ['alice', ['open']],
      ['bob', ['custom', 'open']],
      ['carol', ['custom', 'open']],
      ['svc', ['devices', 'open']],
      ['dave', []],
      ['admin', ['custom', 'devices', 'open']],
    ]
    for (const [who, names] of lists) {
      const response = await call(who, 'GET', '/v1/topics')
      t.equal(response.status, 200)
      t.strictSame(response.body.topics.map((topic: { name: string }) => topic.name), names, `${who} lists ${names.join(', ') || 'nothing'}`)
    }
  })

  await t.test('installations', async (t) => {
    const path = `/v1/installations/${aliceInstallation}`
    for (const who of ['bob', 'carol', 'dave'] as const) {
      const get = await call(who, 'GET', path)
      t.equal(get.status, 404, `${who} cannot see alice's installation`)
      t.equal(get.body.error.code, 'NOT_FOUND')
      const patch = await call(who, 'PATCH', path, { pushToken: { provider: 'fcm', token: `stolen-by-${who}` } })
      t.equal(patch.status, 404, `${who} cannot change it`)
      t.equal(patch.body.error.code, 'NOT_FOUND')
      const del = await call(who, 'DELETE', path)
      t.equal(del.status, 404, `${who} cannot delete it`)
      t.equal(del.body.error.code, 'NOT_FOUND')
      const subs = await call(who, 'GET', `${path}/subscriptions`)
      t.equal(subs.status, 404, `${who} cannot list its subscriptions`)
    }
    const own = await call('alice', 'GET', path)
    t.equal(own.status, 200, 'the owner still has it')
    t.equal(own.body.pushToken, null, 'untouched by the refused PATCHes')
    t.equal((await call('svc', 'GET', path)).status, 200, 'a service may read it')
    t.equal((await call('admin', 'GET', path)).status, 200, 'an admin may read it')
    t.equal((await call('alice', 'GET', '/v1/installations/no-such-installation')).status, 404)

    // creating for someone else
    const forErin = await call('svc', 'POST', '/v1/installations', { user: 'erin' })
    t.equal(forErin.status, 201, 'a service registers an installation for a named user')
    t.equal(forErin.body.installation.user, 'erin')
    t.equal(forErin.body.mqtt.inboxTopic, 'users/erin/inbox')
    const byAdmin = await call('admin', 'POST', '/v1/installations', { user: 'erin' })
    t.equal(byAdmin.status, 201, 'so does an admin')
    const erin = sign({ sub: 'erin' })
    const erins = await api(broker, 'GET', '/v1/installations', { token: erin })
    t.strictSame(erins.body.installations.map((i: { id: string }) => i.id).sort(), [forErin.body.installationId, byAdmin.body.installationId].sort(), 'erin owns both')
    const forBob = await call('alice', 'POST', '/v1/installations', { user: 'bob' })
    t.equal(forBob.status, 403, 'a device may not register one for another user')
    t.equal(forBob.body.error.code, 'NOT_AUTHORIZED')
    const forSelf = await call('alice', 'POST', '/v1/installations', { user: 'alice' })
    t.equal(forSelf.status, 201, 'naming itself is fine')
    t.equal((await call('alice', 'DELETE', `/v1/installations/${forSelf.body.installationId as string}`)).status, 204)
  })

  await t.test('subscriptions', async (t) => {
    const subscribe = async (who: Who, installation: string, filter: string, status: number, code?: string): Promise<void> => {
      const response = await call(who, 'PUT', `/v1/installations/${installation}/subscriptions/${filterPath(filter)}`)
      t.equal(response.status, status, `${who} subscribes ${installation === aliceInstallation ? 'alice' : installation === bobInstallation ? 'bob' : 'dave'}'s installation to ${filter}: ${status}`)
      if (code !== undefined) t.equal(response.body.error.code, code, code)
      else t.strictSame(response.body, { topic: filter, qos: 1 })
    }
    await subscribe('alice', aliceInstallation, 'users/alice/#', 200)
    await subscribe('alice', aliceInstallation, 'app/open', 200)
    await subscribe('alice', aliceInstallation, 'groups/g1/#', 200)
    await subscribe('alice', aliceInstallation, 'groups/g2/#', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, 'users/bob/#', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, 'users/+/inbox', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, 'app/absent', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, 'app/custom', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, 'app/+', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, '#', 403, 'SUBSCRIBE_DENIED')
    await subscribe('alice', aliceInstallation, 'a/#/b', 400, 'TOPIC_INVALID')
    await subscribe('alice', aliceInstallation, 'users/alice/x+', 400, 'TOPIC_INVALID')
    await subscribe('bob', bobInstallation, 'app/custom', 200)
    await subscribe('alice', bobInstallation, 'users/bob/#', 404, 'NOT_FOUND')
    // a service acts for the owner, with the owner's rights (groups as last seen in the owner's token)
    await subscribe('svc', aliceInstallation, 'groups/g1/alerts', 200)
    await subscribe('svc', aliceInstallation, 'users/bob/#', 403, 'SUBSCRIBE_DENIED')
    await subscribe('svc', bobInstallation, 'groups/g1/#', 403, 'SUBSCRIBE_DENIED')
    // an admin may subscribe anyone to anything
    await subscribe('admin', bobInstallation, 'users/+/inbox', 200)
    // token grants of the owner
    await subscribe('dave', daveInstallation, 'users/dave/#', 200)
    await subscribe('dave', daveInstallation, 'users/dave/private/#', 403, 'SUBSCRIBE_DENIED')
    await subscribe('dave', daveInstallation, 'users/dave/private/notes', 403, 'SUBSCRIBE_DENIED')
    await subscribe('dave', daveInstallation, 'app/open', 403, 'SUBSCRIBE_DENIED')
    await subscribe('dave', daveInstallation, 'lab/dave/#', 200)
    await subscribe('dave', daveInstallation, 'lab/alice/#', 403, 'SUBSCRIBE_DENIED')

    // refused filters were never stored
    const listed = async (who: Who, installation: string): Promise<string[]> => {
      const response = await call(who, 'GET', `/v1/installations/${installation}/subscriptions`)
      t.equal(response.status, 200)
      return response.body.subscriptions.map((s: { topic: string }) => s.topic).sort()
    }
    t.strictSame(await listed('alice', aliceInstallation), ['app/open', 'groups/g1/#', 'groups/g1/alerts', 'users/alice/#', 'users/alice/inbox'])
    t.strictSame(await listed('bob', bobInstallation), ['app/custom', 'users/+/inbox', 'users/bob/inbox'])
    t.strictSame(await listed('dave', daveInstallation), ['lab/dave/#', 'users/dave/#', 'users/dave/inbox'])

    // unsubscribing someone else's installation is refused like reading it
    const unsub = await call('alice', 'DELETE', `/v1/installations/${bobInstallation}/subscriptions/app/custom`)
    t.equal(unsub.status, 404)
    t.equal(unsub.body.error.code, 'NOT_FOUND')
    t.strictSame(await listed('bob', bobInstallation), ['app/custom', 'users/+/inbox', 'users/bob/inbox'], 'still subscribed')

    // every installation of the caller at once, under the caller's own ACL
    const mine = await call('alice', 'PUT', `/v1/users/me/subscriptions/${filterPath('users/alice/news/#')}`)
    t.equal(mine.status, 200)
    t.strictSame(mine.body, { topic: 'users/alice/news/#', qos: 1, installations: [aliceInstallation] })
    for (const [who, filter] of [['alice', 'users/bob/#'], ['alice', 'app/absent'], ['bob', 'groups/g1/#'], ['dave', 'users/dave/private/#']] as const) {
      const refused = await call(who, 'PUT', `/v1/users/me/subscriptions/${filterPath(filter)}`)
      t.equal(refused.status, 403, `${who} may not subscribe to ${filter}`)
      t.equal(refused.body.error.code, 'SUBSCRIBE_DENIED')
    }
    const invalid = await call('alice', 'PUT', `/v1/users/me/subscriptions/${filterPath('a/#/b')}`)
    t.equal(invalid.status, 400)
    t.equal(invalid.body.error.code, 'TOPIC_INVALID')
  })

  // what the spy saw: every accepted publish and push to a topic, nothing refused, then the marker
  const marker = await call('admin', 'POST', '/v1/publish', { topic: 'acl-spy/marker', payload: 'marker' })
  t.equal(marker.status, 202)
  await spy.waitFor((m) => m.topic === 'acl-spy/marker')
  const tagsSeen = spy.seen.flatMap((m) => m.payload.match(/<tag-\d+>/g) ?? [])
  t.strictSame(tagsSeen, allowedTags, 'the spy saw exactly the accepted messages, in order')
  t.strictSame(refusedTags.filter((tag) => tagsSeen.includes(tag)), [], 'no refused message went out')
  t.equal(spy.seen.length, allowedTags.length + 1, 'nothing else was published')
})
