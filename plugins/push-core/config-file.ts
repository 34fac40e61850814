import { readFileSync } from 'node:fs'

/**
 * Reads a file a sender's config names (a key, a service account, a CA) when
 * the sender is made. The error names the config key the way
 * `herald check-config` does (`push.apns.keyFile: file not found`), and the
 * library error stays as `cause`.
 */
export function readConfiguredFile (file: string, key: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(code === 'ENOENT' ? `${key}: file not found` : `${key}: cannot read file (${code ?? 'error'})`, { cause: err })
  }
}
