/** Who is on the other end of a connection or request, as established by a verified token. */

export const roles = ['device', 'service', 'admin'] as const
export type Role = (typeof roles)[number]

/** Topic filters granted to one principal; `!filter` denies. `%u` is replaced by `sub`. */
export interface Grants {
  readonly pub: readonly string[]
  readonly sub: readonly string[]
}

export interface Principal {
  readonly kind: 'user' | 'anonymous'
  /** User id (`sub` claim); null for anonymous clients. */
  readonly sub: string | null
  readonly groups: readonly string[]
  readonly role: Role
  /** Grants carried by the token's `acl` claim. */
  readonly grants: Grants
  /** When the token stops being accepted (exp plus the clock tolerance), ms since the epoch; null if it never expires. */
  readonly expiresAt: number | null
  /** When the token was issued (`iat`), ms since the epoch; absent when it does not say. Orders a user's tokens (store/known-principals.ts). */
  readonly issuedAt?: number
}

/** Who a principal is, without what its token grants: what the namespace table and ACL entries look at. */
export type Identity = Pick<Principal, 'kind' | 'sub' | 'groups' | 'role'>

/** A key that is equal for every connection of the same user: client ids and limits hang off it. */
export function ownerKey (principal: Principal): string {
  return principal.kind === 'anonymous' || principal.sub === null ? 'anonymous' : userOwnerKey(principal.sub)
}

export function userOwnerKey (userId: string): string {
  return `user:${userId}`
}

export function anonymousPrincipal (grants: Grants): Principal {
  return { kind: 'anonymous', sub: null, groups: [], role: 'device', grants, expiresAt: null }
}
