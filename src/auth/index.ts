export { createTokenVerifier, type TokenVerifier } from './verify-token.js'
export { signToken, type TokenRequest } from './sign-token.js'
export { checkTimeClaims, type TokenTimePolicy } from './claims.js'
export { anonymousPrincipal, ownerKey, userOwnerKey, roles, type Grants, type Identity, type Principal, type Role } from './principal.js'
