import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** Where a broker without configured keys keeps its generated HS256 secret. */
export function localSecretFile (dataDir: string): string {
  return join(dataDir, 'jwt-secret')
}

/** The key config for the local secret, as `auth.jwt.keys` overrides. */
export function localKeyOverrides (secretFile: string): Record<string, unknown> {
  return { auth: { jwt: { keys: [{ kid: 'local', alg: 'HS256', secretFile }] } } }
}

/** Creates the local secret on first start (readable by the owner only); returns its path. */
export async function ensureLocalSecret (dataDir: string): Promise<{ file: string, created: boolean }> {
  const file = localSecretFile(dataDir)
  if (existsSync(file)) return { file, created: false }
  await mkdir(dataDir, { recursive: true })
  await writeFile(file, randomBytes(48).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' })
  return { file, created: true }
}
