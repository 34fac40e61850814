import type { FastifyRequest } from 'fastify'
import type { Principal, TokenVerifier } from '../auth/index.js'
import { HeraldError } from '../errors/index.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the bearer-token hook on every /v1 route that needs a caller. */
    principal: Principal
  }
}

/** `Authorization: Bearer <JWT>`, verified by the same code as MQTT CONNECT. */
export function bearerAuth (verifier: TokenVerifier, onFailure: (error: HeraldError) => void) {
  return async function authenticate (request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
    try {
      if (match === null) throw new HeraldError('TOKEN_MISSING', 'an Authorization: Bearer <token> header is required')
      request.principal = verifier.verify(match[1] as string)
    } catch (err) {
      if (err instanceof HeraldError) onFailure(err)
      throw err
    }
  }
}

export function requireRole (principal: Principal, ...roles: Array<Principal['role']>): void {
  if (principal.kind !== 'user' || !roles.includes(principal.role)) {
    throw new HeraldError('NOT_AUTHORIZED', `this needs the ${roles.join(' or ')} role`)
  }
}
