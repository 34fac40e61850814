import type { Identity } from '../auth/principal.js'

/**
 * Does an ACL entry or rule selector name this principal?
 * `authenticated` (any token holder), `anonymous`, `user:<id>`, `group:<id>`, `role:<role>`.
 */
export function principalMatches (selector: string, principal: Identity): boolean {
  if (selector === 'authenticated') return principal.kind === 'user'
  if (selector === 'anonymous') return principal.kind === 'anonymous'
  const colon = selector.indexOf(':')
  const kind = selector.slice(0, colon)
  const value = selector.slice(colon + 1)
  switch (kind) {
    case 'user': return principal.kind === 'user' && principal.sub === value
    case 'group': return principal.groups.includes(value)
    case 'role': return principal.kind === 'user' && principal.role === value
    default: return false
  }
}
