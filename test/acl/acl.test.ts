import t, { type Test } from 'tap'
import { createAcl, type AclOptions, type PrincipalAcl } from '../../src/acl/acl.js'
import { noAppTopics, type AppTopicAcl, type AppTopicDirectory } from '../../src/acl/app-topics.js'
import { anonymousPrincipal, type Grants, type Principal, type Role } from '../../src/auth/principal.js'

const noGrants: Grants = { pub: [], sub: [] }

function user (sub: string, role: Role = 'device', groups: string[] = [], grants: Grants = noGrants): Principal {
  return { kind: 'user', sub, groups, role, grants, expiresAt: null }
}

function directory (topics: Record<string, AppTopicAcl>): AppTopicDirectory & { map: Map<string, AppTopicAcl> } {
  const map = new Map(Object.entries(topics))
  return { map, get: (name) => map.get(name) }
}

function aclFor (principal: Principal, options: Partial<AclOptions> = {}): PrincipalAcl {
  return createAcl({ rules: [], anonymousGrants: noGrants, appTopics: noAppTopics, ...options }).forPrincipal(principal)
}

/** The principals of the namespace table; alice owns users/alice, dave is in group g1. */
const cast = {
  owner: user('alice'),
  other: user('bob'),
  service: user('backend', 'service'),
  admin: user('root', 'admin'),
  member: user('dave', 'device', ['g1']),
  anonymous: anonymousPrincipal(noGrants),
} as const
type Who = keyof typeof cast
const everyone = Object.keys(cast) as Who[]

const appTopics = directory({
  news: { subscribe: ['authenticated'], publish: ['role:service'] },
})

/**
 * Concrete topics: who may subscribe to exactly this topic and receive messages on it
 * (`read`), and who may publish to it (`write`). Everyone not listed is refused.
 */
const topics: Array<{ topic: string, read: Who[], write: Who[] }> = [
  { topic: 'users/alice/inbox', read: ['owner', 'admin'], write: ['service', 'admin'] },
  { topic: 'users/alice/inbox/urgent', read: ['owner', 'admin'], write: ['service', 'admin'] },
  { topic: 'users/alice/notes', read: ['owner', 'admin'], write: ['owner', 'service', 'admin'] },
  { topic: 'users/alice/a/b/c', read: ['owner', 'admin'], write: ['owner', 'service', 'admin'] },
  { topic: 'users/alice', read: ['owner', 'admin'], write: ['owner', 'service', 'admin'] },
  { topic: 'users/alice/inboxes', read: ['owner', 'admin'], write: ['owner', 'service', 'admin'] },
  { topic: 'users/bob/notes', read: ['other', 'admin'], write: ['other', 'service', 'admin'] },
  { topic: 'users/bob/inbox', read: ['other', 'admin'], write: ['service', 'admin'] },
  // no user id level: not under users/{uid}/, so "anything else" (a service may not publish there)
  { topic: 'users', read: ['admin'], write: ['admin'] },
  { topic: 'users//x', read: ['admin'], write: ['admin'] },
  { topic: 'users/', read: ['admin'], write: ['admin'] },
  { topic: 'groups/g1/x', read: ['member', 'admin'], write: ['member', 'admin'] },
  { topic: 'groups/g1', read: ['member', 'admin'], write: ['member', 'admin'] },
  { topic: 'groups/g1/a/b', read: ['member', 'admin'], write: ['member', 'admin'] },
  { topic: 'groups/g2/x', read: ['admin'], write: ['admin'] },
  { topic: 'groups', read: ['admin'], write: ['admin'] },
  { topic: 'app/news', read: ['owner', 'other', 'service', 'admin', 'member'], write: ['service', 'admin'] },
  // app topics are exactly two levels
  { topic: 'app/news/x', read: ['admin'], write: ['admin'] },
  { topic: 'app', read: ['admin'], write: ['admin'] },
  // an app topic that was never created: only the admin's blanket rights apply
  { topic: 'app/ghost', read: ['admin'], write: ['admin'] },
  { topic: '$SYS/broker/clients', read: ['admin'], write: [] },
  { topic: '$SYS', read: ['admin'], write: [] },
  { topic: '$custom/x', read: ['admin'], write: [] },
  { topic: 'sensors/x', read: ['admin'], write: ['admin'] },
  { topic: 'alice', read: ['admin'], write: ['admin'] },
  { topic: 'x/users/alice/notes', read: ['admin'], write: ['admin'] },
]

/** Wildcard filters: who may subscribe. */
const filters: Array<{ filter: string, sub: Who[] }> = [
  { filter: 'users/alice/#', sub: ['owner', 'admin'] },
  { filter: 'users/alice/+', sub: ['owner', 'admin'] },
  { filter: 'users/alice/+/x', sub: ['owner', 'admin'] },
  { filter: 'users/bob/#', sub: ['other', 'admin'] },
  { filter: 'users/+/inbox', sub: ['admin'] },
  { filter: 'users/+/#', sub: ['admin'] },
  { filter: 'users/+', sub: ['admin'] },
  { filter: 'users/#', sub: ['admin'] },
  { filter: '+/alice/inbox', sub: ['admin'] },
  { filter: '+/alice/#', sub: ['admin'] },
  { filter: '#', sub: ['admin'] },
  { filter: '+/#', sub: ['admin'] },
  { filter: '+', sub: ['admin'] },
  { filter: 'groups/g1/#', sub: ['member', 'admin'] },
  { filter: 'groups/g1/+', sub: ['member', 'admin'] },
  { filter: 'groups/+/x', sub: ['admin'] },
  { filter: 'groups/+/#', sub: ['admin'] },
  { filter: 'groups/#', sub: ['admin'] },
  { filter: 'app/+', sub: ['admin'] },
  { filter: 'app/#', sub: ['admin'] },
  { filter: 'app/news/#', sub: ['admin'] },
  { filter: '$SYS/#', sub: ['admin'] },
  { filter: '$SYS/+/new/clients', sub: ['admin'] },
  { filter: 'sensors/#', sub: ['admin'] },
]

t.test('the namespace table, for every kind of principal', async (t) => {
  const acls = Object.fromEntries(everyone.map((who) => [who, aclFor(cast[who], { appTopics })])) as Record<Who, PrincipalAcl>
  for (const { topic, read, write } of topics) {
    t.test(topic, async (t) => {
      for (const who of everyone) {
        const acl = acls[who]
        t.equal(acl.canSubscribe(topic), read.includes(who), `${who} ${read.includes(who) ? 'may' : 'may not'} subscribe`)
        t.equal(acl.canReceive(topic), read.includes(who), `${who} ${read.includes(who) ? 'may' : 'may not'} receive`)
        t.equal(acl.canPublish(topic), write.includes(who), `${who} ${write.includes(who) ? 'may' : 'may not'} publish`)
      }
    })
  }
  for (const { filter, sub } of filters) {
    t.test(filter, async (t) => {
      for (const who of everyone) {
        t.equal(acls[who].canSubscribe(filter), sub.includes(who), `${who} ${sub.includes(who) ? 'may' : 'may not'} subscribe`)
      }
    })
  }
})

t.test('an anonymous principal is never an admin, whatever its role says', async (t) => {
  const acl = aclFor({ ...anonymousPrincipal(noGrants), role: 'admin' })
  t.equal(acl.canSubscribe('#'), false)
  t.equal(acl.canSubscribe('$SYS/#'), false)
  t.equal(acl.canReceive('sensors/x'), false)
  t.equal(acl.canPublish('sensors/x'), false)
  t.equal(acl.canPublish('users/x/inbox'), false)
})

t.test('app topics: per-topic ACL entries of every kind', async (t) => {
  const apps = directory({
    news: { subscribe: ['authenticated'], publish: ['role:service'] },
    ops: { subscribe: ['group:ops'], publish: ['group:ops', 'user:alice'] },
    mine: { subscribe: ['user:alice'], publish: ['user:alice'] },
    fleet: { subscribe: ['role:device'], publish: ['role:device'] },
    closed: { subscribe: [], publish: [] },
  })
  const principals = {
    alice: user('alice'),
    opsMember: user('olga', 'device', ['ops']),
    service: user('backend', 'service'),
    admin: user('root', 'admin'),
    anonymous: anonymousPrincipal(noGrants),
  }
  type Name = keyof typeof principals
  const expected: Record<string, { sub: Name[], pub: Name[] }> = {
    news: { sub: ['alice', 'opsMember', 'service', 'admin'], pub: ['service', 'admin'] },
    ops: { sub: ['opsMember', 'admin'], pub: ['opsMember', 'alice', 'admin'] },
    mine: { sub: ['alice', 'admin'], pub: ['alice', 'admin'] },
    fleet: { sub: ['alice', 'opsMember', 'admin'], pub: ['alice', 'opsMember', 'admin'] },
    closed: { sub: ['admin'], pub: ['admin'] },
    absent: { sub: ['admin'], pub: ['admin'] },
  }
  for (const [name, principal] of Object.entries(principals) as Array<[Name, Principal]>) {
    const acl = aclFor(principal, { appTopics: apps })
    for (const [topic, rights] of Object.entries(expected)) {
      t.equal(acl.canSubscribe(`app/${topic}`), rights.sub.includes(name), `${name} subscribe app/${topic}`)
      t.equal(acl.canReceive(`app/${topic}`), rights.sub.includes(name), `${name} receive app/${topic}`)
      t.equal(acl.canPublish(`app/${topic}`), rights.pub.includes(name), `${name} publish app/${topic}`)
    }
    // wildcards over app topics would reach topics the principal may not read
    const admin = name === 'admin'
    t.equal(acl.canSubscribe('app/+'), admin, `${name} subscribe app/+`)
    t.equal(acl.canSubscribe('app/#'), admin, `${name} subscribe app/#`)
    t.equal(acl.canSubscribe('app/news/+'), admin, `${name} subscribe app/news/+`)
    t.equal(acl.canPublish('app/news/x'), admin, `${name} publish app/news/x`)
  }
})

t.test('app topic ACLs are read live: creating, changing and deleting one applies to existing principals', async (t) => {
  const apps = directory({})
  const acl = aclFor(user('alice'), { appTopics: apps })
  t.equal(acl.canSubscribe('app/news'), false, 'absent: denied')
  apps.map.set('news', { subscribe: ['authenticated'], publish: [] })
  t.equal(acl.canSubscribe('app/news'), true, 'created: allowed')
  t.equal(acl.canReceive('app/news'), true)
  t.equal(acl.canPublish('app/news'), false)
  apps.map.set('news', { subscribe: ['user:bob'], publish: ['user:alice'] })
  t.equal(acl.canReceive('app/news'), false, 'changed: no longer readable')
  t.equal(acl.canPublish('app/news'), true, 'changed: now writable')
  apps.map.delete('news')
  t.equal(acl.canReceive('app/news'), false, 'deleted: denied')
  t.equal(acl.canPublish('app/news'), false)
})

t.test('grants from the token acl claim', async (t) => {
  t.test('allow filters, %u, and deny filters that win', async (t) => {
    const grants = { pub: ['sensors/%u/#', 'jobs/+/done'], sub: ['sensors/#', '!sensors/secret/#'] }
    const acl = aclFor(user('alice', 'device', [], grants))
    t.equal(acl.canPublish('sensors/alice/temp'), true, '%u is the user id')
    t.equal(acl.canPublish('sensors/alice'), true, '# covers the parent level')
    t.equal(acl.canPublish('sensors/bob/temp'), false, 'another user\'s %u')
    t.equal(acl.canPublish('sensors/%u/temp'), false, 'the literal %u is not granted')
    t.equal(acl.canPublish('jobs/42/done'), true)
    t.equal(acl.canPublish('jobs/42/failed'), false)

    t.equal(acl.canSubscribe('sensors/#'), true, 'a filter only partly denied is granted')
    t.equal(acl.canSubscribe('sensors/+/temp'), true)
    t.equal(acl.canReceive('sensors/kitchen/temp'), true)
    t.equal(acl.canReceive('sensors/secret/x'), false, '...and the denied part is filtered at delivery')
    t.equal(acl.canReceive('sensors/secret'), false, 'the deny covers its parent level')
    t.equal(acl.canSubscribe('sensors/secret/#'), false, 'a filter wholly inside a deny is refused')
    t.equal(acl.canSubscribe('sensors/secret/+'), false)
    t.equal(acl.canSubscribe('sensors/secret/x'), false)
    t.equal(acl.canSubscribe('sensors'), true)
    t.equal(acl.canSubscribe('jobs/#'), false, 'pub grants do not give sub')
    t.equal(acl.canPublish('sensors/kitchen/temp'), false, 'sub grants do not give pub')
  })

  t.test('deny filters win over the namespace table, for the admin too', async (t) => {
    const alice = aclFor(user('alice', 'device', [], { pub: ['!users/%u/locked'], sub: ['!users/%u/private/#'] }))
    t.equal(alice.canSubscribe('users/alice/#'), true)
    t.equal(alice.canSubscribe('users/alice/private/#'), false)
    t.equal(alice.canSubscribe('users/alice/private/x'), false)
    t.equal(alice.canReceive('users/alice/private/x'), false)
    t.equal(alice.canReceive('users/alice/notes'), true)
    t.equal(alice.canPublish('users/alice/locked'), false)
    t.equal(alice.canPublish('users/alice/notes'), true)

    const admin = aclFor(user('root', 'admin', [], { pub: ['!audit/#'], sub: ['!secrets/#'] }))
    t.equal(admin.canSubscribe('#'), true)
    t.equal(admin.canSubscribe('secrets/#'), false)
    t.equal(admin.canReceive('secrets/x'), false)
    t.equal(admin.canReceive('other/x'), true)
    t.equal(admin.canPublish('audit/x'), false)
    t.equal(admin.canPublish('other/x'), true)

    const member = aclFor(user('dave', 'device', ['g1'], { pub: ['!groups/g1/announce'], sub: [] }))
    t.equal(member.canPublish('groups/g1/announce'), false)
    t.equal(member.canPublish('groups/g1/chat'), true)
  })

  t.test('grants reach "anything else" but never publish to $-topics or read $-topics through wildcards', async (t) => {
    const acl = aclFor(user('alice', 'device', [], { pub: ['#'], sub: ['#'] }))
    t.equal(acl.canSubscribe('#'), true)
    t.equal(acl.canReceive('anything/at/all'), true)
    t.equal(acl.canReceive('users/bob/inbox'), true, 'an explicit grant extends the table')
    t.equal(acl.canPublish('users/bob/inbox'), true)
    t.equal(acl.canReceive('$SYS/broker/clients'), false, '[MQTT-4.7.2-1] # does not reach $SYS')
    t.equal(acl.canSubscribe('$SYS/#'), false)
    t.equal(acl.canPublish('$SYS/x'), false)
    t.equal(acl.canPublish('$custom'), false)

    const sysWriter = aclFor(user('root', 'admin', [], { pub: ['$SYS/#'], sub: [] }))
    t.equal(sysWriter.canPublish('$SYS/x'), false, 'no grant makes a $-topic publishable')
  })

  t.test('a grant list holding only denies grants nothing', async (t) => {
    const acl = aclFor(user('alice', 'device', [], { pub: ['!x/#'], sub: ['!x/#'] }))
    t.equal(acl.canSubscribe('y/#'), false)
    t.equal(acl.canPublish('y'), false)
    t.equal(acl.canSubscribe('users/alice/#'), true, 'the namespace table still applies')
  })
})

t.test('config rules apply to the principals they name', async (t) => {
  const rules: AclOptions['rules'] = [
    { principal: 'authenticated', pub: ['!users/%u/readonly/#'], sub: ['public/#'] },
    { principal: 'anonymous', pub: [], sub: ['lobby/#', 'per-user/%u/#'] },
    { principal: 'user:carol', pub: ['carol-only/#'], sub: ['carol-only/#'] },
    { principal: 'group:ops', pub: ['metrics/%u/#'], sub: ['metrics/#', '!metrics/billing/#'] },
    { principal: 'role:service', pub: ['jobs/#'], sub: ['jobs/#'] },
  ]
  const anonymousGrants = { pub: ['lobby/chat', 'per-user/%u/x'], sub: ['!lobby/hidden/#'] }
  const make = (principal: Principal): PrincipalAcl => aclFor(principal, { rules, anonymousGrants })

  t.test('authenticated', async (t) => {
    const alice = make(user('alice'))
    t.equal(alice.canSubscribe('public/#'), true)
    t.equal(alice.canPublish('public/x'), false)
    t.equal(alice.canPublish('users/alice/readonly/x'), false, 'deny with %u')
    t.equal(alice.canPublish('users/alice/notes'), true)
    t.equal(alice.canSubscribe('lobby/#'), false, 'anonymous rules are not for users')
    t.equal(alice.canPublish('lobby/chat'), false, 'anonymous grants are not for users')
    t.equal(make(anonymousPrincipal(noGrants)).canSubscribe('public/#'), false, 'authenticated excludes anonymous')
  })

  t.test('anonymous: rules and anonymous grants, %u never applies', async (t) => {
    const anon = make(anonymousPrincipal(anonymousGrants))
    t.equal(anon.canSubscribe('lobby/#'), true)
    t.equal(anon.canReceive('lobby/news'), true)
    t.equal(anon.canReceive('lobby/hidden/x'), false, 'anonymous deny grant')
    t.equal(anon.canSubscribe('lobby/hidden/#'), false)
    t.equal(anon.canPublish('lobby/chat'), true)
    t.equal(anon.canPublish('lobby/other'), false)
    t.equal(anon.canSubscribe('per-user/#'), false, 'a %u rule does not turn into a wildcard')
    t.equal(anon.canSubscribe('per-user/null/#'), false)
    t.equal(anon.canSubscribe('per-user/%u/#'), false)
    t.equal(anon.canSubscribe('per-user/undefined/#'), false)
    t.equal(anon.canPublish('per-user/null/x'), false)
    t.equal(anon.canPublish('per-user/%u/x'), false)
    t.equal(anon.canSubscribe('public/#'), false)
  })

  t.test('user:', async (t) => {
    t.equal(make(user('carol')).canPublish('carol-only/x'), true)
    t.equal(make(user('carol')).canSubscribe('carol-only/#'), true)
    t.equal(make(user('carl')).canPublish('carol-only/x'), false)
    t.equal(make(user('carol2')).canSubscribe('carol-only/#'), false)
  })

  t.test('group: with %u and deny', async (t) => {
    const olga = make(user('olga', 'device', ['ops']))
    t.equal(olga.canPublish('metrics/olga/cpu'), true)
    t.equal(olga.canPublish('metrics/ivan/cpu'), false)
    t.equal(olga.canSubscribe('metrics/#'), true)
    t.equal(olga.canReceive('metrics/ivan/cpu'), true)
    t.equal(olga.canReceive('metrics/billing/x'), false)
    t.equal(olga.canSubscribe('metrics/billing/#'), false)
    const ivan = make(user('ivan', 'device', ['dev']))
    t.equal(ivan.canSubscribe('metrics/#'), false)
    t.equal(ivan.canPublish('metrics/ivan/cpu'), false)
  })

  t.test('role:', async (t) => {
    t.equal(make(user('backend', 'service')).canPublish('jobs/1'), true)
    t.equal(make(user('backend', 'service')).canSubscribe('jobs/#'), true)
    t.equal(make(user('alice', 'device')).canPublish('jobs/1'), false)
    t.equal(make(user('alice', 'device')).canSubscribe('jobs/#'), false)
  })

  t.test('token grants and config rules add up; a deny from either wins', async (t) => {
    const olga = make(user('olga', 'device', ['ops'], { pub: [], sub: ['metrics/billing/summary', '!public/private/#'] }))
    t.equal(olga.canReceive('metrics/billing/summary'), false, 'the rule deny beats the token allow')
    t.equal(olga.canReceive('public/x'), true)
    t.equal(olga.canReceive('public/private/x'), false, 'the token deny beats the rule allow')
  })
})

t.test('rules are evaluated per principal: one acl serves many', async (t: Test) => {
  const acl = createAcl({ rules: [{ principal: 'user:alice', pub: [], sub: ['x/#'] }], anonymousGrants: noGrants, appTopics: noAppTopics })
  const alice = acl.forPrincipal(user('alice'))
  const bob = acl.forPrincipal(user('bob'))
  t.equal(alice.canSubscribe('x/#'), true)
  t.equal(bob.canSubscribe('x/#'), false)
  t.equal(alice.canSubscribe('users/alice/#'), true)
  t.equal(bob.canSubscribe('users/alice/#'), false)
})

t.test('one acl, many principals: shared grants and per-user grants do not mix', async (t: Test) => {
  const acl = createAcl({ rules: [{ principal: 'authenticated', pub: ['devices/%u/#'], sub: ['!devices/%u/secret'] }], anonymousGrants: noGrants, appTopics: noAppTopics })
  const same = { pub: ['app/news', '!app/news/x'], sub: ['feed/#', '!feed/private'] }
  const alice = acl.forPrincipal(user('alice', 'device', [], same))
  const bob = acl.forPrincipal(user('bob', 'device', [], { pub: [...same.pub], sub: [...same.sub] }))
  const carol = acl.forPrincipal(user('carol', 'device', [], { pub: ['feed/x'], sub: [] }))
  for (const [name, who] of [['alice', alice], ['bob', bob]] as const) {
    t.equal(who.canSubscribe('feed/#'), true, `${name}: token grant`)
    t.equal(who.canReceive('feed/a'), true, `${name}: token grant`)
    t.equal(who.canReceive('feed/private'), false, `${name}: token deny`)
    t.equal(who.canPublish(`devices/${name}/t`), true, `${name}: own %u rule`)
    t.equal(who.canReceive(`devices/${name}/secret`), false, `${name}: own %u deny`)
  }
  t.equal(alice.canPublish('devices/bob/t'), false, 'the %u rule is alice\'s own')
  t.equal(bob.canPublish('devices/alice/t'), false, 'and bob\'s own')
  t.equal(carol.canPublish('feed/x'), true, 'other grants stay apart')
  t.equal(carol.canReceive('feed/a'), false)
  t.equal(alice.canPublish('feed/x'), false)
})

t.test('the acl of a principal does not keep its token grants object', async (t: Test) => {
  const grants = { pub: ['a/b'], sub: ['c/#'] }
  const acl = aclFor(user('alice', 'device', [], grants))
  // the grants are read when the acl is built: a connection holds the acl, not the token's claims
  grants.pub.push('x/y')
  grants.sub.length = 0
  t.equal(acl.canPublish('a/b'), true)
  t.equal(acl.canPublish('x/y'), false)
  t.equal(acl.canReceive('c/d'), true)
})
