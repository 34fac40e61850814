import { readFileSync } from 'node:fs'

/** Herald's version from package.json, found from src/ (tests) and dist/src/ (built) alike. */
export function heraldVersion (): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'herald' && pkg.version !== undefined) return pkg.version
    } catch {
      // not at this level
    }
  }
  return '0.0.0'
}
