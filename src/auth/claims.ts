import { HeraldError } from '../errors/index.js'
import { roles, type Grants, type Principal, type Role } from './principal.js'
import { isTopicLevelId } from './topic-level-id.js'

/** Most tokens name no group: they all share this one empty list (a principal lives as long as its connection). */
const noGroups: readonly string[] = Object.freeze([])

/** Turns the verified claims of a token into a principal, refusing claims Herald cannot use safely. */
export function principalFromClaims (claims: Record<string, unknown>): Principal {
  const { sub, groups = noGroups, role = 'device', acl, exp, iat } = claims
  if (typeof sub !== 'string' || !isTopicLevelId(sub)) {
    throw new HeraldError('TOKEN_INVALID', 'the sub claim is missing or is not a usable user id')
  }
  if (!Array.isArray(groups) || !groups.every((g): g is string => typeof g === 'string' && isTopicLevelId(g))) {
    throw new HeraldError('TOKEN_INVALID', 'the groups claim must be an array of group ids')
  }
  if (typeof role !== 'string' || !(roles as readonly string[]).includes(role)) {
    throw new HeraldError('TOKEN_INVALID', `the role claim must be one of ${roles.join(', ')}`)
  }
  return {
    kind: 'user',
    sub,
    groups: groups.length === 0 ? noGroups : groups,
    role: role as Role,
    grants: parseGrants(acl),
    expiresAt: typeof exp === 'number' ? exp * 1000 : null,
    ...(typeof iat === 'number' && { issuedAt: iat * 1000 }),
  }
}

/** What `auth.jwt` asks of a token's time claims beyond jsonwebtoken's own `exp`/`nbf` checks. */
export interface TokenTimePolicy {
  readonly requireExp: boolean
  /** Longest lifetime a token may claim; 0: no bound. */
  readonly maxTtlSec: number
  readonly clockToleranceSec: number
}

/**
 * The time checks jsonwebtoken leaves out: it checks `exp` and `nbf` when they
 * are there, but accepts a token without `exp`, one whose `exp` is 1e20 (a
 * leaked token that never dies), and an `iat` a day in the future (a wrong
 * clock at the issuer, or a token minted to outlive a lifetime check).
 */
export function checkTimeClaims (claims: Record<string, unknown>, policy: TokenTimePolicy, nowSec: number): void {
  const { exp, iat } = claims
  if (iat !== undefined) {
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new HeraldError('TOKEN_INVALID', 'the iat claim must be a number')
    // the same skew as for exp and nbf (RFC 7519 §4.1.6 leaves the check to the application)
    if (iat > nowSec + policy.clockToleranceSec) throw new HeraldError('TOKEN_INVALID', 'the token was issued in the future (iat)')
  }
  if (exp === undefined) {
    if (policy.requireExp) throw new HeraldError('TOKEN_INVALID', 'the token has no exp claim (auth.jwt.requireExp)')
    return
  }
  // jsonwebtoken already refused an exp that is not a number
  if (typeof exp !== 'number' || policy.maxTtlSec === 0) return
  // the lifetime the issuer gave the token; without iat, what is left of it (with the skew allowed)
  const lifetime = typeof iat === 'number' ? exp - iat : exp - nowSec - policy.clockToleranceSec
  if (!(lifetime <= policy.maxTtlSec)) {
    throw new HeraldError('TOKEN_INVALID', 'the token lives longer than auth.jwt.maxTtlSec allows')
  }
}

function parseGrants (acl: unknown): Grants {
  if (acl === undefined) return { pub: [], sub: [] }
  if (acl === null || typeof acl !== 'object' || Array.isArray(acl)) {
    throw new HeraldError('TOKEN_INVALID', 'the acl claim must be an object {pub, sub}')
  }
  const { pub = [], sub = [], ...rest } = acl as Record<string, unknown>
  const isFilterList = (v: unknown): v is string[] => Array.isArray(v) && v.every((f) => typeof f === 'string' && f.length > 0)
  if (Object.keys(rest).length > 0 || !isFilterList(pub) || !isFilterList(sub)) {
    throw new HeraldError('TOKEN_INVALID', 'the acl claim must be an object {pub: [filters], sub: [filters]}')
  }
  return { pub, sub }
}
