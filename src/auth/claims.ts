import { HeraldError } from '../errors/index.js'
import { roles, type Grants, type Principal, type Role } from './principal.js'

// A user or group id becomes one topic level (`users/{sub}/…`), so it must not
// contain level separators, wildcards or NUL, and must not start with `$` ([MQTT-4.7.2-1]).
const topicLevelId = /^[^/+#\u0000$][^/+#\u0000]{0,127}$/

/** Most tokens name no group: they all share this one empty list (a principal lives as long as its connection). */
const noGroups: readonly string[] = Object.freeze([])

/** Turns the verified claims of a token into a principal, refusing claims Herald cannot use safely. */
export function principalFromClaims (claims: Record<string, unknown>): Principal {
  const { sub, groups = noGroups, role = 'device', acl, exp } = claims
  if (typeof sub !== 'string' || !topicLevelId.test(sub)) {
    throw new HeraldError('TOKEN_INVALID', 'the sub claim is missing or is not a usable user id')
  }
  if (!Array.isArray(groups) || !groups.every((g): g is string => typeof g === 'string' && topicLevelId.test(g))) {
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
