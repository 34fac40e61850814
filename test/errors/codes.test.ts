import { readFileSync } from 'node:fs'
import t from 'tap'
import { errorCodes } from '../../src/errors/index.js'
import { HeraldError } from '../../src/errors/index.js'

t.test('the README lists exactly the error codes of the table, with the same HTTP status and CONNACK', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('## Error codes'))
  const documented = new Map<string, { status: number, connack: number }>()
  for (const match of section.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (\d) \|/gm)) {
    documented.set(match[1] as string, { status: Number(match[2]), connack: Number(match[3]) })
  }
  const inCode = new Map(Object.entries(errorCodes).map(([code, spec]) => [code, { status: spec.status, connack: spec.connack }]))
  t.strictSame(Object.fromEntries(documented), Object.fromEntries(inCode))
})

t.test('HeraldError carries its code, status and CONNACK, and keeps the cause', async (t) => {
  const cause = new Error('library detail')
  const error = new HeraldError('TOKEN_EXPIRED', undefined, { cause })
  t.equal(error.code, 'TOKEN_EXPIRED')
  t.equal(error.status, 401)
  t.equal(error.connack, 4)
  t.equal(error.message, errorCodes.TOKEN_EXPIRED.message)
  t.equal(error.cause, cause)
})

t.test('docs/configuration.md documents every config key', async (t) => {
  const docs = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  const defaults = JSON.parse(readFileSync(new URL('../../config/default.json', import.meta.url), 'utf8')) as Record<string, unknown>
  const keys: string[] = []
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [key, value] of Object.entries(node)) {
      const path = prefix === '' ? key : `${prefix}.${key}`
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) walk(value as Record<string, unknown>, path)
      else keys.push(path)
    }
  }
  walk(defaults, '')
  // `auth.anonymous.acl.pub` and `.sub` share one row
  const missing = keys.filter((key) => !docs.includes(`\`${key}\``) && !docs.includes(`\`${key.replace(/\.(pub|sub)$/, '.pub')}\``))
  t.strictSame(missing, [], 'every key has a row')
})
