import t from 'tap'
import { createAcl } from '../../src/acl/acl.js'
import { noAppTopics, type AppBucketAcl } from '../../src/acl/index.js'
import { anonymousPrincipal, type Grants, type Principal, type Role } from '../../src/auth/principal.js'

// Bucket events topics in the topic ACL: reading follows the bucket's read
// rule, and no client may publish on them, whoever it is.

const noGrants: Grants = { pub: [], sub: [] }
const user = (sub: string, role: Role = 'device', groups: string[] = [], grants: Grants = noGrants): Principal =>
  ({ kind: 'user', sub, groups, role, grants, expiresAt: null })

const buckets = new Map<string, AppBucketAcl>([
  ['news', { read: ['authenticated'], write: ['role:service'] }],
  ['ops-only', { read: ['group:ops'], write: ['role:admin'] }],
])
const acl = createAcl({ rules: [{ principal: 'user:alice', pub: ['#'], sub: [] }], anonymousGrants: { pub: ['#'], sub: ['#'] }, appTopics: noAppTopics, appBuckets: { bucketAcl: (name) => buckets.get(name) } })

const cast = {
  owner: user('alice', 'device', ['ops']),
  other: user('bob'),
  member: user('dave', 'device', ['ops']),
  service: user('backend', 'service'),
  admin: user('root', 'admin'),
  granted: user('eve', 'device', [], { pub: ['#'], sub: ['#'] }),
  anonymous: anonymousPrincipal(noGrants),
} as const
type Who = keyof typeof cast
const everyone = Object.keys(cast) as Who[]

const cases: Array<{ topic: string, read: Who[] }> = [
  { topic: 'users/alice/buckets/notes/events', read: ['owner', 'admin', 'granted', 'anonymous'] },
  { topic: 'groups/ops/buckets/tasks/events', read: ['owner', 'member', 'admin', 'granted', 'anonymous'] },
  { topic: 'app/buckets/news/events', read: ['owner', 'other', 'member', 'service', 'admin', 'granted', 'anonymous'] },
  { topic: 'app/buckets/ops-only/events', read: ['owner', 'member', 'admin', 'granted', 'anonymous'] },
  { topic: 'app/buckets/unknown/events', read: ['admin', 'granted', 'anonymous'] },
]

t.test('events topics: read per the bucket rule, publish by nobody', async (t) => {
  for (const { topic, read } of cases) {
    for (const who of everyone) {
      const rights = acl.forPrincipal(cast[who])
      // the anonymous principal and eve read everything through grants; that is what grants are for
      t.equal(rights.canSubscribe(topic), read.includes(who), `${who} subscribe ${topic}`)
      t.equal(rights.canReceive(topic), read.includes(who), `${who} receive ${topic}`)
      t.equal(rights.canPublish(topic), false, `${who} may not publish ${topic}`)
    }
  }
})

t.test('only the events topic itself is closed to publishers', async (t) => {
  const owner = acl.forPrincipal(cast.owner)
  t.ok(owner.canPublish('users/alice/buckets/notes'))
  t.ok(owner.canPublish('users/alice/buckets/notes/events/x'))
  t.ok(owner.canPublish('users/alice/notes/events'))
  t.ok(acl.forPrincipal(cast.member).canPublish('groups/ops/buckets'))
  t.notOk(acl.forPrincipal(cast.admin).canPublish('groups/ops/buckets/x/events'))
  t.notOk(acl.forPrincipal(cast.service).canPublish('users/alice/buckets/x/events'))
})

t.test('app bucket events: no wildcards across buckets, the ACL read live', async (t) => {
  const other = acl.forPrincipal(cast.other)
  t.notOk(other.canSubscribe('app/buckets/+/events'))
  t.notOk(other.canSubscribe('app/buckets/#'))
  t.notOk(other.canSubscribe('app/buckets/news/#'), 'only the events topic is per-bucket readable')
  t.ok(acl.forPrincipal(cast.admin).canSubscribe('app/buckets/+/events'))
  t.ok(acl.forPrincipal(cast.owner).canSubscribe('users/alice/buckets/+/events'), 'the owner’s own namespace')
  t.notOk(acl.forPrincipal(cast.other).canSubscribe('users/alice/buckets/+/events'))

  buckets.set('late', { read: ['user:bob'], write: [] })
  t.ok(other.canReceive('app/buckets/late/events'), 'a bucket created later applies to an existing connection')
  buckets.delete('late')
  t.notOk(other.canReceive('app/buckets/late/events'))
})

t.test('bucket rights over HTTP: the scope rules, then deny filters on the events topic', async (t) => {
  const ops = { kind: 'group', id: 'ops' } as const
  const rights = (who: Principal, scope: Parameters<typeof acl.bucketRights>[1], bucket: string): { read: boolean, write: boolean } =>
    acl.bucketRights(who, scope, bucket, scope.kind === 'app' ? buckets.get(bucket) : undefined)
  t.strictSame(rights(cast.member, ops, 'tasks'), { read: true, write: true }, 'a member, no grants')
  t.strictSame(rights(user('f', 'device', ['ops'], { pub: ['!groups/ops/#'], sub: ['!groups/ops/#'] }), ops, 'tasks'), { read: false, write: false }, 'denied both ways')
  t.strictSame(rights(user('g', 'device', ['ops'], { pub: ['!groups/ops/#'], sub: [] }), ops, 'tasks'), { read: true, write: false }, 'publishing denied')
  t.strictSame(rights(user('h', 'device', ['ops'], { pub: [], sub: ['!groups/ops/#'] }), ops, 'tasks'), { read: false, write: false }, 'reading denied: a write answers with the object')
  t.strictSame(rights(user('h', 'device', ['ops'], { pub: [], sub: ['!groups/ops/buckets/+/events'] }), ops, 'tasks'), { read: false, write: false }, 'a wildcard deny')
  t.strictSame(rights(user('h', 'device', ['ops'], { pub: [], sub: ['!groups/ops/buckets/other/#'] }), ops, 'tasks'), { read: true, write: true }, 'another bucket denied')
  t.strictSame(rights(user('i', 'device', [], { pub: [], sub: ['!users/%u/buckets/private/#'] }), { kind: 'user', id: 'i' }, 'private'), { read: false, write: false }, 'a user scope, %u resolved')
  t.strictSame(rights(user('i', 'device', [], { pub: [], sub: ['!users/%u/buckets/private/#'] }), { kind: 'user', id: 'i' }, 'notes'), { read: true, write: true })
  t.strictSame(rights(user('r', 'admin', [], { pub: ['!app/#'], sub: [] }), { kind: 'app' }, 'news'), { read: true, write: false }, 'deny filters bind admins')
  t.strictSame(rights(user('j', 'device', [], { pub: [], sub: ['!app/buckets/news/events'] }), { kind: 'app' }, 'news'), { read: false, write: false }, 'an app bucket')
  t.strictSame(rights(cast.other, { kind: 'app' }, 'unknown'), { read: false, write: false }, 'no such app bucket')
  t.strictSame(rights(cast.other, ops, 'tasks'), { read: false, write: false }, 'not a member: grants do not open buckets')
})
