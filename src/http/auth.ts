import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Principal, TokenVerifier } from '../auth/index.js'
import { HeraldError } from '../errors/index.js'
import type { AuthFailureLimiter } from './auth-failure-limiter.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the bearer-token hook on every /v1 route that needs a caller. */
    principal: Principal
  }
}

export interface BearerAuthOptions {
  readonly verifier: TokenVerifier
  /** Failed authentications per client IP (`http.authFailureLimit`). */
  readonly failures: AuthFailureLimiter
  /** A request whose credentials were refused. */
  onFailure (error: HeraldError): void
  /** A request refused before its token was looked at: its address failed too often. */
  onLimited (): void
}

/**
 * `Authorization: Bearer <JWT>`, verified by the same code as MQTT CONNECT.
 * Every refusal counts against the client's address; past `http.authFailureLimit`
 * the address gets 429 with Retry-After, and no token of it is verified until then.
 */
export function bearerAuth (options: BearerAuthOptions) {
  const { verifier, failures } = options
  return async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const waitMs = await failures.blockedFor(request.ip)
    if (waitMs > 0) {
      options.onLimited()
      reply.header('retry-after', String(Math.ceil(waitMs / 1000)))
      throw new HeraldError('RATE_LIMITED', 'too many failed authentications from this address; retry later')
    }
    const header = request.headers.authorization
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
    try {
      if (match === null) throw new HeraldError('TOKEN_MISSING', 'an Authorization: Bearer <token> header is required')
      request.principal = verifier.verify(match[1] as string)
    } catch (err) {
      if (err instanceof HeraldError) {
        options.onFailure(err)
        await failures.failed(request.ip)
      }
      throw err
    }
  }
}

export function requireRole (principal: Principal, ...roles: Array<Principal['role']>): void {
  if (principal.kind !== 'user' || !roles.includes(principal.role)) {
    throw new HeraldError('NOT_AUTHORIZED', `this needs the ${roles.join(' or ')} role`)
  }
}
