export { createTokenVerifier, type TokenVerifier } from './verify-token.js'
export { signToken, type TokenRequest } from './sign-token.js'
export { anonymousPrincipal, ownerKey, roles, type Grants, type Principal, type Role } from './principal.js'
