import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { makeTempDir } from '../helpers/broker.js'
import { startProviderFakes } from '../helpers/providers.js'
import { fixture, logLine, root, runHerald, SECRET, spawnProcess, heraldBin, writeJson } from './cli-helpers.js'

const CERT = fixture('tls/cert.pem')
const KEY = fixture('tls/key.pem')
const hs256 = { auth: { jwt: { keys: [{ alg: 'HS256', secret: SECRET }] } } }
const noStack = /^\s+at /m

/** PEM files of every kind the config names, written to a temp dir. */
async function keyFiles (t: Test): Promise<Record<string, string>> {
  const dir = await makeTempDir(t, 'herald-keys-')
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' })
  const files: Record<string, string | Buffer> = {
    'rsa.pub.pem': rsa.publicKey.export({ type: 'spki', format: 'pem' }),
    'rsa.key.pem': rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    'p256.pub.pem': p256.publicKey.export({ type: 'spki', format: 'pem' }),
    'p384.pub.pem': p384.publicKey.export({ type: 'spki', format: 'pem' }),
    // a PEM block whose body is not a key (a truncated or mangled copy)
    'garbage.pub.pem': '-----BEGIN PUBLIC KEY-----\nTm90IGEga2V5IGF0IGFsbA==\n-----END PUBLIC KEY-----\n',
    // the fixture certificate in DER: a valid certificate, not PEM
    'cert.der': new X509Certificate(readFileSync(CERT)).raw,
    'short.secret': 'too short\n',
  }
  const paths: Record<string, string> = {}
  for (const [name, content] of Object.entries(files)) {
    paths[name] = join(dir, name)
    await writeFile(paths[name], content)
  }
  return paths
}

/** check-config on `config`: the exit code and its one problem line. */
async function checkOne (t: Test, config: unknown): Promise<{ code: number | null, stderr: string, stdout: string }> {
  const result = await runHerald(t, ['check-config', await writeJson(t, config)])
  t.notMatch(result.stderr, noStack, 'no stack trace')
  return result
}

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('a PEM public key that does not parse: exit 1, one line naming the key', async (t) => {
    const files = await keyFiles(t)
    const result = await checkOne(t, { auth: { jwt: { keys: [{ alg: 'RS256', publicKeyFile: files['garbage.pub.pem'] }] } } })
    t.equal(result.code, 1)
    t.equal(result.stdout, '')
    t.match(result.stderr, /^herald: invalid configuration: auth\.jwt\.keys\[0\]\.publicKeyFile: not a PEM public key \([^)\n]+\)\n$/)
  })

  t.test('a certificate that is not PEM: exit 1, one line naming tls.certFile', async (t) => {
    const files = await keyFiles(t)
    const result = await checkOne(t, { ...hs256, tls: { certFile: files['cert.der'], keyFile: KEY } })
    t.equal(result.code, 1)
    t.equal(result.stderr, 'herald: invalid configuration: tls.certFile: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)\n')
  })

  t.test('a key file that cannot be read: exit 1, one line naming the key and the reason', async (t) => {
    // a directory: there, but not readable as a file (as root, permissions cannot make a file unreadable)
    const dir = await makeTempDir(t, 'herald-not-a-file-')
    const result = await checkOne(t, { ...hs256, tls: { certFile: dir, keyFile: KEY } })
    t.equal(result.code, 1)
    t.equal(result.stderr, `herald: invalid configuration: tls.certFile: cannot read ${dir} (EISDIR)\n`)
  })

  t.test('an invalid ACL filter: exit 1, one line naming the rule and the filter', async (t) => {
    const result = await checkOne(t, { ...hs256, acl: { rules: [{ principal: 'role:device', pub: ['telemetry/%u/#'], sub: ['telemetry/#/bad'] }] } })
    t.equal(result.code, 1)
    t.equal(result.stderr, 'herald: invalid configuration: acl.rules[0].sub[0]: "telemetry/#/bad" is not a valid filter: # must be the whole last level\n')
  })

  t.test('an enum lists its allowed values', async (t) => {
    const engine = await checkOne(t, { storage: { engine: 'rocksdb' } })
    t.equal(engine.code, 1)
    t.equal(engine.stderr, 'herald: invalid configuration: storage.engine: must be one of leveldb, memory\n')
    const format = await checkOne(t, { log: { format: 'text' } })
    t.equal(format.stderr, 'herald: invalid configuration: log.format: must be one of auto, json, pretty\n')
    const workers = await checkOne(t, { cluster: { workers: 'many' } })
    t.equal(workers.stderr, 'herald: invalid configuration: cluster.workers: must be a whole number from 1 to 256 or auto\n')
    const url = await checkOne(t, { cluster: { redis: { url: 6379 } } })
    t.equal(url.stderr, 'herald: invalid configuration: cluster.redis.url: must be a non-empty string or null\n')
  })

  t.test('every problem of the files and filters, one line each', async (t) => {
    const files = await keyFiles(t)
    const fakes = await startProviderFakes(t)
    const push = fakes.push as { fcm: Record<string, unknown>, apns: Record<string, unknown> }
    const result = await checkOne(t, {
      auth: {
        jwt: {
          keys: [
            { kid: 'a', alg: 'ES256', publicKeyFile: files['rsa.pub.pem'] },
            { kid: 'b', alg: 'ES256', publicKeyFile: files['p384.pub.pem'] },
            { kid: 'c', alg: 'RS256', publicKey: 'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA' },
            { kid: 'd', alg: 'RS256', publicKeyFile: files['rsa.pub.pem'], privateKeyFile: files['p256.pub.pem'] },
            { kid: 'e', alg: 'HS256', secretFile: files['short.secret'] },
          ],
        },
      },
      tls: { certFile: CERT, keyFile: files['rsa.key.pem'] },
      push: { fcm: { ...push.fcm, caFile: files['cert.der'] }, apns: { ...push.apns, caFile: files['garbage.pub.pem'] } },
    })
    t.equal(result.code, 1)
    t.same(result.stderr.split('\n'), [
      'herald: invalid configuration:',
      '  auth.jwt.keys[0].publicKeyFile: ES256 needs an EC key, this is RSA',
      '  auth.jwt.keys[1].publicKeyFile: ES256 needs a P-256 (prime256v1) key, this one is on secp384r1',
      '  auth.jwt.keys[2].publicKey: not a PEM public key (no -----BEGIN PUBLIC KEY----- block)',
      '  auth.jwt.keys[3].privateKeyFile: not a PEM private key (it holds a PUBLIC KEY)',
      '  auth.jwt.keys[4].secretFile: the secret must be at least 32 bytes',
      '  tls.keyFile: not the private key of the first certificate in tls.certFile',
      '  push.fcm.caFile: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)',
      '  push.apns.caFile: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)',
      '',
    ])
  })

  t.test('every bad filter, one line each, with the broker\'s reason', async (t) => {
    const result = await checkOne(t, {
      ...hs256,
      limits: { maxTopicLevels: 4 },
      auth: { ...hs256.auth, anonymous: { acl: { pub: ['public/+x'], sub: ['!public/#/x', 'public/%u/#'] } } },
      acl: { rules: [{ principal: 'group:ops', pub: ['!'], sub: ['a/b/c/d/e', 'ops/%u/+/#'] }] },
    })
    t.equal(result.code, 1)
    t.same(result.stderr.split('\n'), [
      'herald: invalid configuration:',
      '  acl.rules[0].pub[0]: "!" is not a valid filter: the topic is empty',
      '  acl.rules[0].sub[0]: "a/b/c/d/e" is not a valid filter: the topic has more levels than limits.maxTopicLevels',
      '  auth.anonymous.acl.pub[0]: "public/+x" is not a valid filter: + must be a whole level',
      '  auth.anonymous.acl.sub[0]: "!public/#/x" is not a valid filter: # must be the whole last level',
      '',
    ])
  })

  t.test('a config whose keys, certificates and filters are all good passes', async (t) => {
    const files = await keyFiles(t)
    const fakes = await startProviderFakes(t)
    const result = await checkOne(t, {
      auth: {
        jwt: {
          keys: [
            { kid: 'rs', alg: 'RS256', publicKeyFile: files['rsa.pub.pem'], privateKeyFile: files['rsa.key.pem'] },
            { kid: 'es', alg: 'ES256', publicKey: readFileSync(files['p256.pub.pem'] as string, 'utf8') },
            { kid: 'hs', alg: 'HS256', secret: SECRET },
          ],
        },
        anonymous: { acl: { sub: ['public/#', '!public/private/#'] } },
      },
      acl: { rules: [{ principal: 'role:device', pub: ['telemetry/%u/#'], sub: ['announcements/+', '$SYS/broker/#'] }] },
      tls: { certFile: CERT, keyFile: KEY },
      push: fakes.push,
    })
    t.equal(result.code, 0, result.stderr)
    t.match(result.stdout, /^configuration is valid \(.*herald\.json\)\n$/)
  })

  t.test('herald start refuses the same bad PEM: one line, exit 1, nothing listening', async (t) => {
    const files = await keyFiles(t)
    const dataDir = await makeTempDir(t, 'herald-cli-data-')
    const config = await writeJson(t, {
      dataDir,
      listen: { host: '127.0.0.1' },
      mqtt: { port: 0 },
      http: { port: 0 },
      auth: { jwt: { keys: [{ alg: 'RS256', publicKeyFile: files['garbage.pub.pem'] }] } },
    })
    const { child, closed } = spawnProcess(t, process.execPath, [heraldBin, 'start', '--config', config], { cwd: dataDir })
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const listening = logLine(child.stdout, 'herald listening')
    const exit = await Promise.race([closed, listening.then(() => 'listening' as const)])
    t.same(exit, { code: 1, signal: null }, 'exits 1 without listening')
    t.match(stderr, /^herald: invalid configuration: auth\.jwt\.keys\[0\]\.publicKeyFile: not a PEM public key \([^)\n]+\)\n$/)
  })
}
