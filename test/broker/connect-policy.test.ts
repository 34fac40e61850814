import t from 'tap'
import { createAcl } from '../../src/acl/acl.js'
import { noAppTopics } from '../../src/acl/app-topics.js'
import type { Principal } from '../../src/auth/principal.js'
import { admitConnection, recordClaim, type ConnectPolicyDeps, type ConnectRequest } from '../../src/broker/connect-policy.js'
import { HeraldError, isHeraldError } from '../../src/errors/index.js'
import { openClientOwnerStore, sameClaim, type ClientIdClaim, type ClientOwnerStore } from '../../src/store/client-owners.js'
import { openDatabase } from '../../src/store/open-store.js'
import { makeTempDir } from '../helpers/broker.js'

const user = (sub: string, expiresAt: number | null = null): Principal =>
  ({ kind: 'user', sub, groups: [], role: 'device', grants: { pub: [`users/${sub}/#`], sub: ['#'] }, expiresAt })

/** Tokens are the user id they stand for; `expired` is refused as the verifier would. */
const verifier = {
  verify (token: string): Principal {
    if (token === 'expired') throw new HeraldError('TOKEN_EXPIRED')
    return user(token, token === 'alice' ? 1_000 : null)
  },
}

function memoryOwners (): ClientOwnerStore & { claims: Map<string, ClientIdClaim> } {
  const claims = new Map<string, ClientIdClaim>()
  return {
    claims,
    get: (clientId) => claims.get(clientId),
    claim: async (clientId, claim) => {
      const held = claims.get(clientId)
      if (held !== undefined) return held
      claims.set(clientId, claim)
      return claim
    },
    set: async (clientId, claim) => { claims.set(clientId, claim) },
    delete: async (clientId) => { claims.delete(clientId) },
    release: async (clientId, claim) => sameClaim(claims.get(clientId), claim) && claims.delete(clientId),
    entries: () => claims.entries(),
    ownsInstallation: (owner) => [...claims.values()].some((claim) => claim.installation && claim.owner === owner),
  }
}

interface Setup {
  readonly deps: ConnectPolicyDeps
  readonly owners: ReturnType<typeof memoryOwners>
  readonly live: Map<string, string>
  readonly attempts: string[]
}

function setup (options: { anonymous?: boolean, allowed?: boolean, maxConnectionsPerUser?: number } = {}): Setup {
  const owners = memoryOwners()
  /** client id → owner of its live connection */
  const live = new Map<string, string>()
  const attempts: string[] = []
  const deps: ConnectPolicyDeps = {
    verifier,
    acl: createAcl({ rules: [], anonymousGrants: { pub: [], sub: [] }, appTopics: noAppTopics }),
    anonymous: { enabled: options.anonymous ?? false, grants: { pub: [], sub: ['public/#'] } },
    limits: { maxClientIdLength: 23, maxConnectionsPerUser: options.maxConnectionsPerUser ?? 2, maxTopicLength: 256, maxTopicLevels: 8 },
    owners,
    connectLimiter: { tryConnect: async (ip) => { attempts.push(ip); return options.allowed ?? true } },
    connections: {
      ownerOf: (clientId) => live.get(clientId),
      countForOwner: (owner, clientId) => [...live].filter(([id, o]) => o === owner && id !== clientId).length,
    },
  }
  return { deps, owners, live, attempts }
}

const request = (overrides: Partial<ConnectRequest> = {}): ConnectRequest => ({
  clientId: 'phone', clientIdGiven: true, clean: true, willTopic: undefined, password: Buffer.from('alice'), ip: '192.0.2.1', ...overrides,
})

async function refusal (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    if (isHeraldError(err)) return err.code
    throw err
  }
  throw new Error('admitted')
}

t.test('a valid token is admitted as its user, with its ACL and expiry', async (t) => {
  const { deps, attempts } = setup()
  const admission = await admitConnection(request(), deps)
  t.equal(admission.owner, 'user:alice')
  t.equal(admission.expiresAt, 1_000)
  t.equal(admission.claim, undefined)
  t.ok(admission.acl.canPublish('users/alice/x'))
  t.notOk(admission.acl.canPublish('users/bob/x'))
  t.same(attempts, ['192.0.2.1'], 'the attempt counts against its address')
})

t.test('refusals, each with its code', async (t) => {
  t.equal(await refusal(admitConnection(request(), setup({ allowed: false }).deps)), 'RATE_LIMITED')
  // [MQTT-3.1.3-8]
  t.equal(await refusal(admitConnection(request({ clientIdGiven: false, clean: false }), setup().deps)), 'CLIENT_ID_INVALID')
  t.equal(await refusal(admitConnection(request({ clientId: 'x'.repeat(24) }), setup().deps)), 'CLIENT_ID_INVALID')
  t.equal(await refusal(admitConnection(request({ password: undefined }), setup().deps)), 'TOKEN_MISSING')
  t.equal(await refusal(admitConnection(request({ password: Buffer.alloc(0) }), setup().deps)), 'TOKEN_MISSING')
  t.equal(await refusal(admitConnection(request({ password: Buffer.from('expired') }), setup().deps)), 'TOKEN_EXPIRED')
  t.equal(await refusal(admitConnection(request({ willTopic: 'users/bob/gone' }), setup().deps)), 'PUBLISH_DENIED')
  t.equal(await refusal(admitConnection(request({ willTopic: 'users/alice/+' }), setup().deps)), 'TOPIC_INVALID')
})

t.test('a node that cannot serve (its cluster lost Redis) refuses first, CONNACK 3, asking nothing that would wait', async (t) => {
  const { deps, attempts, owners } = setup()
  const lost: ConnectPolicyDeps = { ...deps, unavailable: () => new HeraldError('STORE_UNREACHABLE') }
  const refused: unknown = await admitConnection(request({ clean: false }), lost).catch((err: unknown) => err)
  t.equal(isHeraldError(refused) ? refused.code : refused, 'STORE_UNREACHABLE')
  t.equal(isHeraldError(refused) ? refused.connack : refused, 3, 'CONNACK 3: server unavailable')
  t.same(attempts, [], 'the rate limiter (counted in Redis in a cluster) is not asked')
  t.equal(owners.get('phone'), undefined, 'no claim')
  t.equal((await admitConnection(request(), { ...deps, unavailable: () => null })).owner, 'user:alice', 'admitted again once it can serve')
})

t.test('an empty client id with clean session, a will the ACL allows', async (t) => {
  const admission = await admitConnection(request({ clientIdGiven: false, willTopic: 'users/alice/gone' }), setup().deps)
  t.equal(admission.owner, 'user:alice')
})

t.test('anonymous clients when enabled', async (t) => {
  const admission = await admitConnection(request({ password: undefined }), setup({ anonymous: true }).deps)
  t.equal(admission.owner, 'anonymous')
  t.equal(admission.expiresAt, null)
  t.ok(admission.acl.canSubscribe('public/news'))
  t.notOk(admission.acl.canSubscribe('private/news'))
})

t.test('a client id belongs to one owner, live or claimed', async (t) => {
  const live = setup()
  live.live.set('phone', 'user:bob')
  t.equal(await refusal(admitConnection(request(), live.deps)), 'CLIENT_ID_TAKEN')
  live.live.set('phone', 'user:alice')
  t.equal((await admitConnection(request(), live.deps)).owner, 'user:alice', 'its owner takes its own connection over')

  const claimed = setup()
  claimed.owners.claims.set('phone', { owner: 'user:bob', installation: false })
  t.equal(await refusal(admitConnection(request(), claimed.deps)), 'CLIENT_ID_TAKEN')
  claimed.owners.claims.set('phone', { owner: 'user:alice', installation: true })
  t.same((await admitConnection(request(), claimed.deps)).claim, { owner: 'user:alice', installation: true })
})

t.test('connections per user, not counting the one taken over', async (t) => {
  const { deps, live } = setup({ maxConnectionsPerUser: 2 })
  live.set('laptop', 'user:alice')
  live.set('tablet', 'user:alice')
  t.equal(await refusal(admitConnection(request(), deps)), 'TOO_MANY_CONNECTIONS')
  t.equal((await admitConnection(request({ clientId: 'tablet' }), deps)).owner, 'user:alice')
  const anonymous = setup({ anonymous: true, maxConnectionsPerUser: 0 })
  t.equal((await admitConnection(request({ password: undefined }), anonymous.deps)).owner, 'anonymous', 'anonymous clients have no per-user count')
})

t.test('a persistent session claims its client id; clean=true releases it, except an installation', async (t) => {
  const { deps, owners } = setup()
  const persistent = request({ clean: false })
  await recordClaim(persistent, await admitConnection(persistent, deps), owners)
  t.same(owners.claims.get('phone'), { owner: 'user:alice', installation: false })
  await recordClaim(persistent, await admitConnection(persistent, deps), owners)
  t.same(owners.claims.get('phone'), { owner: 'user:alice', installation: false }, 'an existing claim stays')
  await recordClaim(request(), await admitConnection(request(), deps), owners)
  t.equal(owners.claims.get('phone'), undefined, 'clean=true discards the session and its claim')

  owners.claims.set('phone', { owner: 'user:alice', installation: true })
  await recordClaim(request(), await admitConnection(request(), deps), owners)
  t.same(owners.claims.get('phone'), { owner: 'user:alice', installation: true }, 'an installation keeps its id')
})

t.test('a claim another node made meanwhile: clean=true releases only the claim it saw', async (t) => {
  const { deps, owners } = setup()
  owners.claims.set('phone', { owner: 'user:alice', installation: false })
  const admission = await admitConnection(request(), deps)
  // between admission and release, the id was released and claimed by bob (another node)
  owners.claims.set('phone', { owner: 'user:bob', installation: false })
  await recordClaim(request(), admission, owners)
  t.same(owners.claims.get('phone'), { owner: 'user:bob', installation: false }, 'bob keeps his claim')
})

t.test('owners racing for a free client id (real LevelDB store): exactly one is admitted', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const owners = await openClientOwnerStore(db)
  const { deps } = setup()
  const racing: ConnectPolicyDeps = { ...deps, owners }
  const users = Array.from({ length: 50 }, (_, i) => `user${i}`)
  const outcomes = await Promise.all(users.map(async (sub) => {
    const persistent = request({ clean: false, password: Buffer.from(sub) })
    try {
      // as hooks.ts does: admission, then the claim is recorded
      await recordClaim(persistent, await admitConnection(persistent, racing), owners)
      return 'admitted'
    } catch (err) {
      if (isHeraldError(err)) return err.code
      throw err
    }
  }))
  t.equal(outcomes.filter((o) => o === 'admitted').length, 1, 'one winner')
  t.equal(outcomes.filter((o) => o === 'CLIENT_ID_TAKEN').length, 49, 'every other one is refused as taken')
  const winner = users[outcomes.indexOf('admitted')]
  t.same(owners.get('phone'), { owner: `user:${winner}`, installation: false }, 'the claim is the winner\'s')
})
