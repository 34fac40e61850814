import type { HeraldConfig } from './schema.js'

/** The config as it may be logged: secrets replaced, file paths kept. */
export function redactConfig (config: HeraldConfig): unknown {
  return {
    ...config,
    auth: {
      ...config.auth,
      jwt: {
        ...config.auth.jwt,
        keys: config.auth.jwt.keys.map((key) => ({ ...key, secret: key.secret === null ? null : '[redacted]' })),
      },
    },
  }
}
