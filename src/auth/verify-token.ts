import jwt from 'jsonwebtoken'
import type { HeraldConfig } from '../config/index.js'
import { HeraldError } from '../errors/index.js'
import { checkTimeClaims, principalFromClaims } from './claims.js'
import { loadVerificationKeys, type VerificationKey } from './keys.js'
import type { Principal } from './principal.js'

export interface TokenVerifier {
  /** Verifies a compact JWT and returns its principal; throws a HeraldError (TOKEN_*) otherwise. */
  verify (token: string): Principal
}

/**
 * JWT verification shared by MQTT CONNECT and HTTP. The header is only used to
 * pick the key; the key is verified with its own algorithm alone, so
 * `alg: none` and HS/RS confusion can never select a verification path.
 */
export function createTokenVerifier (jwtConfig: HeraldConfig['auth']['jwt']): TokenVerifier {
  const keys = loadVerificationKeys(jwtConfig.keys)
  const toleranceMs = jwtConfig.clockToleranceSec * 1000
  const verifyOptions: jwt.VerifyOptions = {
    clockTolerance: jwtConfig.clockToleranceSec,
    ...(jwtConfig.issuer !== null && { issuer: jwtConfig.issuer }),
    ...(jwtConfig.audience !== null && { audience: jwtConfig.audience }),
  }

  /**
   * The one key that may verify the token, or a refusal. A single key is the
   * key whatever kid the issuer stamps on its tokens, as with a JWT library
   * given one key: identity providers put a kid on every token while the PEM
   * pasted into the config carries none. A kid configured on that key must
   * match, though (a token meant for a retired key). With several keys (each
   * has a kid, checked at load) the token's kid names its key: no token is
   * tried against one key after another.
   */
  function keyFor (header: TokenHeader): VerificationKey {
    const { alg, kid } = header
    if (keys.length <= 1) {
      const only = keys[0]
      if (only !== undefined && only.alg === alg && (only.kid === null || kid === undefined || kid === only.kid)) return only
    } else {
      if (kid === undefined) throw new HeraldError('TOKEN_INVALID', 'the token has no kid: with several keys configured, a token must name its key')
      const named = keys.find((k) => k.kid === kid && k.alg === alg)
      if (named !== undefined) return named
    }
    throw new HeraldError('TOKEN_INVALID', 'no configured key matches the token kid/alg')
  }

  return {
    verify (token) {
      if (Buffer.byteLength(token, 'utf8') > jwtConfig.maxTokenBytes) throw new HeraldError('TOKEN_TOO_LARGE')
      const header = readHeader(token)
      if (header === undefined) throw new HeraldError('TOKEN_INVALID', 'the token is not a well-formed JWT')
      const key = keyFor(header)
      let claims: unknown
      try {
        claims = jwt.verify(token, key.key, { ...verifyOptions, algorithms: [key.alg] })
      } catch (err) {
        throw translateJwtError(err)
      }
      // jsonwebtoken returns a payload that is not a JSON object as a string
      if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
        throw new HeraldError('TOKEN_INVALID', 'the token payload is not a JSON object')
      }
      checkTimeClaims(claims as Record<string, unknown>, jwtConfig, Math.floor(Date.now() / 1000))
      const principal = principalFromClaims(claims as Record<string, unknown>)
      // the token is accepted until exp + tolerance, so a connection is closed then, not at exp:
      // closing earlier would let the same token reconnect and be closed again at once
      return principal.expiresAt === null ? principal : { ...principal, expiresAt: principal.expiresAt + toleranceMs }
    },
  }
}

interface TokenHeader { readonly alg: unknown, readonly kid?: unknown }

/**
 * The JOSE header of a compact JWT, undefined when the token is not three
 * dot-separated parts with a JSON object first. Only the header is needed to
 * pick the key; jwt.verify() decodes the whole token again anyway, and a
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
