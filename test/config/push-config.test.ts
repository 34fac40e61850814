import { generateKeyPairSync } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/index.js'
import { makeTempDir } from '../helpers/broker.js'

function problemsOf (overrides: Record<string, unknown>): string[] {
  try {
    loadConfig({ env: {}, overrides })
    return []
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems]
    throw err
  }
}

t.test('push providers are validated at start, naming the key', async (t) => {
  const dir = await makeTempDir(t)
  const p8 = join(dir, 'AuthKey.p8')
  await writeFile(p8, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const rsa = join(dir, 'rsa.pem')
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' })
  await writeFile(rsa, rsaKey)
  const account = join(dir, 'sa.json')
  await writeFile(account, JSON.stringify({ type: 'service_account', project_id: 'p', client_email: 'x@p.iam.gserviceaccount.com', private_key: rsaKey }))
  const notAccount = join(dir, 'other.json')
  await writeFile(notAccount, JSON.stringify({ hello: 'world' }))
  const apns = { keyId: 'K', teamId: 'T', topic: 'com.example' }

  t.same(problemsOf({ push: { apns: { ...apns, keyFile: p8 }, fcm: { serviceAccountFile: account } } }), [], 'a valid pair')
  t.same(problemsOf({ push: { apns: { ...apns, keyFile: join(dir, 'missing.p8') } } }), ['push.apns.keyFile: file not found'])
  t.same(problemsOf({ push: { apns: { ...apns, keyFile: rsa } } }), ['push.apns.keyFile: not an APNs auth key (.p8: EC private key in PEM)'])
  t.same(problemsOf({ push: { apns: { ...apns, keyFile: account } } }), ['push.apns.keyFile: not an APNs auth key (.p8: EC private key in PEM)'])
  t.same(problemsOf({ push: { apns: { keyFile: p8 } } }), ['push.apns: must have required properties keyId, teamId, topic'])
  t.same(problemsOf({ push: { fcm: { serviceAccountFile: join(dir, 'missing.json') } } }), ['push.fcm.serviceAccountFile: file not found or not JSON'])
  t.match(problemsOf({ push: { fcm: { serviceAccountFile: notAccount } } }), ['push.fcm.serviceAccountFile: not a service account (no client_email)'])
  t.same(problemsOf({ push: { huawei: {} } }), ['push.huawei: unknown key'], 'an unknown provider')
  t.same(problemsOf({ push: { retryBaseMs: 5000, retryMaxMs: 1000 } }), ['push.retryMaxMs: must be at least push.retryBaseMs'])
})
