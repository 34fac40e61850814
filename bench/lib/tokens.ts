import { randomBytes } from 'node:crypto'
import jwt from 'jsonwebtoken'

/** Every bench client may publish and subscribe under `bench/#`, whatever the broker's own namespace says. */
export const BENCH_GRANTS = { pub: ['bench/#'], sub: ['bench/#'] }

/** HS256 tokens for Herald (an HS256 key without kid, as HERALD_JWT_SECRET configures). */
export class TokenSigner {
  readonly secret = randomBytes(32).toString('base64url')
  readonly #cache = new Map<string, string>()

  /** A device token for bench user `n`; each connection of a phase is its own user, as real devices are. */
  device (n: number): string {
    const sub = `bench-${n}`
    let token = this.#cache.get(sub)
    if (token === undefined) {
      token = jwt.sign({ sub, role: 'device', acl: BENCH_GRANTS }, this.secret, { algorithm: 'HS256', expiresIn: '2h' })
      this.#cache.set(sub, token)
    }
    return token
  }

  /** A server token for the HTTP bridge. */
  service (): string {
    return jwt.sign({ sub: 'bench-service', role: 'service', acl: BENCH_GRANTS }, this.secret, { algorithm: 'HS256', expiresIn: '2h' })
  }
}
