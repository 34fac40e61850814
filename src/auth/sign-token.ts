import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import jwt from 'jsonwebtoken'
import type { JwtKeyConfig } from '../config/index.js'
import { hs256Key } from './keys.js'
import type { Role } from './principal.js'

export interface TokenRequest {
  sub: string
  role?: Role
  groups?: string[]
  acl?: { pub?: string[], sub?: string[] }
  /** Lifetime like `1h`, `30m`, `7d` (jsonwebtoken's `expiresIn`); null for no expiry. */
  ttl?: string | null
  issuer?: string | null
  audience?: string | null
}

/** Signs a token with a configured key: HS256 with its secret, RS256/ES256 with `privateKeyFile`. */
export function signToken (key: JwtKeyConfig, request: TokenRequest): string {
  const secretOrKey = key.alg === 'HS256'
    ? hs256Key(key)
    : createPrivateKey(readFileSync(requirePrivateKeyFile(key), 'utf8'))
  const claims: Record<string, unknown> = { sub: request.sub, role: request.role ?? 'device' }
  if (request.groups !== undefined && request.groups.length > 0) claims.groups = request.groups
  if (request.acl !== undefined) claims.acl = request.acl
  const options: jwt.SignOptions = { algorithm: key.alg }
  if (key.kid !== null) options.keyid = key.kid
  if (request.ttl !== undefined && request.ttl !== null) options.expiresIn = request.ttl as jwt.SignOptions['expiresIn']
  if (request.issuer) options.issuer = request.issuer
  if (request.audience) options.audience = request.audience
  return jwt.sign(claims, secretOrKey, options)
}

function requirePrivateKeyFile (key: JwtKeyConfig): string {
  if (key.privateKeyFile === null) throw new Error(`auth.jwt.keys (kid ${key.kid ?? 'none'}): signing with ${key.alg} needs privateKeyFile`)
  return key.privateKeyFile
}
