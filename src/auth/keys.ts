import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { JwtKeyConfig } from '../config/index.js'

export type JwtAlgorithm = JwtKeyConfig['alg']

/** A verification key, loaded once at start. */
export interface VerificationKey {
  readonly kid: string | null
  readonly alg: JwtAlgorithm
  readonly key: KeyObject
}

/**
 * Loads the configured keys as KeyObjects. Typed keys are what stops algorithm
 * confusion: jsonwebtoken refuses to verify an HS256 token with an RSA/EC key
 * object, and each key only accepts its own algorithm.
 */
export function loadVerificationKeys (keys: readonly JwtKeyConfig[]): VerificationKey[] {
  return keys.map((k) => {
    if (k.alg === 'HS256') {
      return { kid: k.kid, alg: k.alg, key: hs256Key(k) }
    }
    const pem = k.publicKey ?? readFileSync(k.publicKeyFile as string, 'utf8')
    const key = createPublicKey(pem)
    const expectedType = k.alg === 'RS256' ? 'rsa' : 'ec'
    if (key.asymmetricKeyType !== expectedType) {
      throw new Error(`auth.jwt.keys (kid ${k.kid ?? 'none'}): ${k.alg} needs an ${expectedType.toUpperCase()} public key`)
    }
    return { kid: k.kid, alg: k.alg, key }
  })
}

/** An HS256 key from its secret, inline or in `secretFile` (trimmed: the file's final newline is no part of it); verifying and signing read it alike. */
export function hs256Key (k: JwtKeyConfig): KeyObject {
  const secret = k.secret ?? readFileSync(k.secretFile as string, 'utf8').trim()
  return createSecretKey(Buffer.from(secret, 'utf8'))
}
