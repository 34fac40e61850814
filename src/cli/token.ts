import { existsSync } from 'node:fs'
import jwt from 'jsonwebtoken'
import { checkTimeClaims, roles, signToken, type Role } from '../auth/index.js'
import { HeraldError } from '../errors/index.js'
import { loadCheckedConfig } from './checked-config.js'
import { localKeyOverrides, localSecretFile } from './local-secret.js'

export interface TokenOptions {
  configFile: string | undefined
  sub: string
  role: string
  groups: string[]
  ttl: string | null
  kid: string | undefined
}

/** `herald token`: prints a token signed with a configured key, or with the local secret of `herald start`. */
export function tokenCommand (options: TokenOptions): number {
  if (!(roles as readonly string[]).includes(options.role)) {
    process.stderr.write(`--role: must be one of ${roles.join(', ')}\n`)
    return 2
  }
  let config = loadCheckedConfig({ file: options.configFile })
  if (config.auth.jwt.keys.length === 0) {
    const file = localSecretFile(config.dataDir)
    if (!existsSync(file)) {
      process.stderr.write('auth.jwt.keys: no key configured and no local secret yet; run `herald start` once or configure a key\n')
      return 1
    }
    config = loadCheckedConfig({ file: options.configFile, overrides: localKeyOverrides(file) })
  }
  const keys = config.auth.jwt.keys
  const key = options.kid === undefined ? keys[0] : keys.find((k) => k.kid === options.kid)
  if (key === undefined) {
    process.stderr.write(`--kid: no key with kid ${options.kid ?? ''}\n`)
    return 1
  }
  const token = signToken(key, {
    sub: options.sub,
    role: options.role as Role,
    groups: options.groups,
    ttl: options.ttl,
    issuer: config.auth.jwt.issuer,
    audience: config.auth.jwt.audience,
  })
  // a token the broker would refuse (`--ttl never` with auth.jwt.requireExp, a ttl over auth.jwt.maxTtlSec) is not printed
  try {
    checkTimeClaims(jwt.decode(token) as Record<string, unknown>, config.auth.jwt, Math.floor(Date.now() / 1000))
  } catch (err) {
    if (!(err instanceof HeraldError)) throw err
    process.stderr.write(`--ttl ${options.ttl ?? 'never'}: ${err.message}\n`)
    return 2
  }
  process.stdout.write(token + '\n')
  return 0
}
