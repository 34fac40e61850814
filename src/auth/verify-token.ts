import jwt from 'jsonwebtoken'
import type { HeraldConfig } from '../config/index.js'
import { HeraldError } from '../errors/index.js'
import { principalFromClaims } from './claims.js'
import { loadVerificationKeys, type VerificationKey } from './keys.js'
import type { Principal } from './principal.js'

export interface TokenVerifier {
  /** Verifies a compact JWT and returns its principal; throws a HeraldError (TOKEN_*) otherwise. */
  verify (token: string): Principal
}

/**
 * JWT verification shared by MQTT CONNECT and HTTP. The header is only used to
 * pick candidate keys; each candidate is verified with its own algorithm alone,
 * so `alg: none` and HS/RS confusion can never select a verification path.
 */
export function createTokenVerifier (jwtConfig: HeraldConfig['auth']['jwt']): TokenVerifier {
  const keys = loadVerificationKeys(jwtConfig.keys)
  const toleranceMs = jwtConfig.clockToleranceSec * 1000
  const verifyOptions: jwt.VerifyOptions = {
    clockTolerance: jwtConfig.clockToleranceSec,
    ...(jwtConfig.issuer !== null && { issuer: jwtConfig.issuer }),
    ...(jwtConfig.audience !== null && { audience: jwtConfig.audience }),
  }

  function candidates (header: TokenHeader): VerificationKey[] {
    if (header.kid !== undefined) return keys.filter((k) => k.kid === header.kid && k.alg === header.alg)
    return keys.filter((k) => k.alg === header.alg)
  }

  return {
    verify (token) {
      if (Buffer.byteLength(token, 'utf8') > jwtConfig.maxTokenBytes) throw new HeraldError('TOKEN_TOO_LARGE')
      const header = readHeader(token)
      if (header === undefined) throw new HeraldError('TOKEN_INVALID', 'the token is not a well-formed JWT')
      const matching = candidates(header)
      if (matching.length === 0) {
        throw new HeraldError('TOKEN_INVALID', 'no configured key matches the token kid/alg')
      }
      let lastError: unknown
      for (const key of matching) {
        try {
          const claims = jwt.verify(token, key.key, { ...verifyOptions, algorithms: [key.alg] })
          const principal = principalFromClaims(claims as Record<string, unknown>)
          // the token is accepted until exp + tolerance, so a connection is closed then, not at exp:
          // closing earlier would let the same token reconnect and be closed again at once
          return principal.expiresAt === null ? principal : { ...principal, expiresAt: principal.expiresAt + toleranceMs }
        } catch (err) {
          if (err instanceof HeraldError) throw err
          lastError = err
        }
      }
      throw translateJwtError(lastError)
    },
  }
}

interface TokenHeader { readonly alg: unknown, readonly kid?: unknown }

/**
 * The JOSE header of a compact JWT, undefined when the token is not three
 * dot-separated parts with a JSON object first. Only the header is needed to
 * pick the keys; jwt.verify() decodes the whole token again anyway, and a
 * full jwt.decode() here was a tenth of a CONNECT's main-thread time.
 */
function readHeader (token: string): TokenHeader | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  try {
    const header: unknown = JSON.parse(Buffer.from(parts[0] as string, 'base64url').toString('utf8'))
    return typeof header === 'object' && header !== null && !Array.isArray(header) ? header as TokenHeader : undefined
  } catch {
    return undefined
  }
}

function translateJwtError (err: unknown): HeraldError {
  if (err instanceof jwt.TokenExpiredError) return new HeraldError('TOKEN_EXPIRED', undefined, { cause: err })
  if (err instanceof jwt.NotBeforeError) return new HeraldError('TOKEN_INVALID', 'the token is not valid yet', { cause: err })
  // jsonwebtoken's messages name the failed check (signature, audience, issuer) and never echo the token
  const reason = err instanceof Error ? err.message : 'verification failed'
  return new HeraldError('TOKEN_INVALID', `the token could not be verified: ${reason}`, { cause: err })
}
