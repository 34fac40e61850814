import type { Acl, PrincipalAcl } from '../acl/index.js'
import { assertPublishTopic } from '../acl/topic-validation.js'
import { anonymousPrincipal, ownerKey, type Grants, type Principal, type TokenVerifier } from '../auth/index.js'
import type { HeraldConfig } from '../config/index.js'
import { HeraldError } from '../errors/index.js'
import type { ClientIdClaim, ClientOwnerStore } from '../store/client-owners.js'
import type { ConnectLimiter } from './connect-limiter.js'

/**
 * Whether a CONNECT is accepted, and as whom: plain data in, a decision or a
 * HeraldError out, no aedes. hooks.ts feeds it what the CONNECT packet said.
 */

/** What a CONNECT asks for. */
export interface ConnectRequest {
  readonly clientId: string
  /** false when the client sent a zero-length id and aedes made one up */
  readonly clientIdGiven: boolean
  readonly clean: boolean
  readonly willTopic: string | undefined
  readonly password: Readonly<Buffer> | undefined
  /** the peer's address, for the per-address rate limit */
  readonly ip: string
}

/** The live connections, as far as the policy needs them (ConnectionRegistry). */
export interface LiveConnections {
  /** the owner key of the live connection with this client id */
  ownerOf (clientId: string): string | undefined
  /** live connections of this owner, not counting one with this client id (it is about to be taken over) */
  countForOwner (owner: string, clientId: string): number
}

export interface ConnectPolicyDeps {
  readonly verifier: TokenVerifier
  readonly acl: Pick<Acl, 'forPrincipal'>
  readonly anonymous: { readonly enabled: boolean, readonly grants: Grants }
  readonly limits: Pick<HeraldConfig['limits'], 'maxClientIdLength' | 'maxConnectionsPerUser' | 'maxTopicLength' | 'maxTopicLevels'>
  readonly owners: ClientOwnerStore
  readonly connectLimiter: ConnectLimiter
  readonly connections: LiveConnections
  /**
   * Why no CONNECT can be admitted now (a cluster node that lost Redis), asked
   * first, so a CONNECT is refused at once (CONNACK 3) instead of waiting for a
   * store or rate limiter that cannot answer; null or absent: go on.
   */
  readonly unavailable?: () => HeraldError | null
}

/** An accepted CONNECT. */
export interface Admission {
  /** the owner key of its principal (auth/principal.ts `ownerKey`) */
  readonly owner: string
  readonly acl: PrincipalAcl
  /** when its token stops being accepted, ms since the epoch; null if never */
  readonly expiresAt: number | null
  /** who claimed the client id before this CONNECT (undefined when this CONNECT claimed it) */
  readonly claim: ClientIdClaim | undefined
}

/** Decides a CONNECT; throws a HeraldError whose code gives the CONNACK return code. */
export async function admitConnection (request: ConnectRequest, deps: ConnectPolicyDeps): Promise<Admission> {
  const { limits } = deps
  const unavailable = deps.unavailable?.() ?? null
  if (unavailable !== null) throw unavailable
  if (!await deps.connectLimiter.tryConnect(request.ip)) throw new HeraldError('RATE_LIMITED')
  // [MQTT-3.1.3-8] a zero-length client id needs a clean session
  if (!request.clientIdGiven && !request.clean) throw new HeraldError('CLIENT_ID_INVALID', 'an empty client id needs clean session')
  if (request.clientId.length > limits.maxClientIdLength) throw new HeraldError('CLIENT_ID_INVALID', 'the client id is longer than limits.maxClientIdLength')

  const principal = principalOf(request.password, deps)
  const owner = ownerKey(principal)
  const principalAcl = deps.acl.forPrincipal(principal)
  if (request.willTopic !== undefined) assertPublishTopic(request.willTopic, limits)
  if (request.willTopic !== undefined && !principalAcl.canPublish(request.willTopic)) {
    throw new HeraldError('PUBLISH_DENIED', 'the will topic may not be published to')
  }

  const liveOwner = deps.connections.ownerOf(request.clientId)
  // from memory: no store read per CONNECT when the id is claimed already (nearly every reconnect)
  const claim = deps.owners.get(request.clientId)
  if ((liveOwner !== undefined && liveOwner !== owner) || (claim !== undefined && claim.owner !== owner)) {
    throw new HeraldError('CLIENT_ID_TAKEN')
  }
  if (principal.kind === 'user' && deps.connections.countForOwner(owner, request.clientId) >= limits.maxConnectionsPerUser) {
    throw new HeraldError('TOO_MANY_CONNECTIONS')
  }
  if (!request.clean && claim === undefined) {
    // A persistent session claims its client id, last, once everything else admits it: the claim
    // is atomic (across nodes on Redis), so of several owners racing for a free id exactly one wins.
    const holder = await deps.owners.claim(request.clientId, { owner, installation: false })
    if (holder.owner !== owner) throw new HeraldError('CLIENT_ID_TAKEN')
  }
  return { owner, acl: principalAcl, expiresAt: principal.expiresAt, claim }
}

/**
 * After admission: clean=true discards a persistent session, and with it the
 * claim on its client id, except an installation's (its id stays claimed
 * until the installation is deleted). A persistent session's claim was made
 * by `admitConnection`.
 */
export async function recordClaim (request: Pick<ConnectRequest, 'clientId' | 'clean'>, admission: Admission, owners: ClientOwnerStore): Promise<void> {
  const { claim } = admission
  // only while it is still the claim this CONNECT saw (another node may have changed it since)
  if (request.clean && claim !== undefined && !claim.installation) await owners.release(request.clientId, claim)
}

function principalOf (password: Readonly<Buffer> | undefined, deps: ConnectPolicyDeps): Principal {
  if (password !== undefined && password.length > 0) return deps.verifier.verify(password.toString('utf8'))
  if (deps.anonymous.enabled) return anonymousPrincipal(deps.anonymous.grants)
  throw new HeraldError('TOKEN_MISSING', 'a JWT is required in the CONNECT password')
}
