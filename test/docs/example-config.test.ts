/**
 * config/herald.example.json is a config Herald accepts once the files it
 * names are in place (schema, keys, certificates, service account), and
 * docs/herald.example.md explains every key it sets.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { makeTempDir } from '../helpers/broker.js'

const example = fileURLToPath(new URL('../../config/herald.example.json', import.meta.url))
const docs = readFileSync(new URL('../../docs/herald.example.md', import.meta.url), 'utf8')

/** Every key path the file sets, objects walked into (`push.apns.keyId`); array items are not keys. */
function keyPaths (value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return []
  return Object.entries(value).flatMap(([key, child]) => [`${prefix}${key}`, ...keyPaths(child, `${prefix}${key}.`)])
}

t.test('the example config, with files where it names them, is one Herald accepts', async (t) => {
  // every /etc/herald/ path is a placeholder: the test puts real files of the right kind there, in a temp dir
  const dir = await makeTempDir(t, 'herald-example-')
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const files: Record<string, string> = {
    'tls/fullchain.pem': readFileSync(new URL('../fixtures/tls/cert.pem', import.meta.url), 'utf8'),
    'tls/privkey.pem': readFileSync(new URL('../fixtures/tls/key.pem', import.meta.url), 'utf8'),
    'keys/backend.secret': randomBytes(48).toString('base64'),
    'keys/idp-2026.pub.pem': rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    'firebase-service-account.json': JSON.stringify({ type: 'service_account', project_id: 'my-app', client_email: 'x@my-app.iam.gserviceaccount.com', private_key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }),
    'AuthKey_ABC123DEFG.p8': ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  }
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true })
    await writeFile(join(dir, name), content)
  }
  const text = readFileSync(example, 'utf8')
  t.same([...new Set(text.match(/\/etc\/herald\/[^"]+/g))].sort(), Object.keys(files).map((name) => `/etc/herald/${name}`).sort(), 'the files it names')
  const placed = join(dir, 'herald.json')
  await writeFile(placed, text.replaceAll('/etc/herald/', `${dir}/`))
  const config = loadConfig({ file: placed, env: {} })
  t.equal(config.tls.certFile, join(dir, 'tls/fullchain.pem'))
  t.ok(config.push.fcm !== undefined && config.push.apns !== undefined, 'FCM and APNs on')
  t.equal(config.auth.jwt.keys.length, 2, 'its own keys: no generated secret')
})

t.test('docs/herald.example.md names every key the example sets', async (t) => {
  const keys = keyPaths(JSON.parse(readFileSync(example, 'utf8')))
  // explained: the docs name it as code, by its path (`push.apns.keyId`), its last part (`keyId`) or a path under it
  // (`auth.jwt` for auth), or show it in a JSON snippet ("keyId")
  const spans = [...docs.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string)
  const missing = keys.filter((path) => {
    const last = path.split('.').pop() as string
    return !spans.some((span) => span === path || span === last || span.startsWith(`${path}.`)) && !docs.includes(`"${last}"`)
  })
  t.same(missing, [])
})
