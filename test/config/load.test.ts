import { existsSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig, type LoadOptions } from '../../src/config/index.js'
import { makeTempDir } from '../helpers/broker.js'

const SECRET = 'a-config-test-secret-of-at-least-32-bytes'

/** The problems loadConfig reports for `options`; fails the test if it does not throw a ConfigError. */
function problemsOf (t: Test, options: LoadOptions): readonly string[] {
  try {
    loadConfig({ env: {}, ...options })
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  t.fail('expected a ConfigError')
  return []
}

async function writeJson (t: Test, value: unknown): Promise<string> {
  const dir = await makeTempDir(t, 'herald-config-')
  const file = join(dir, 'herald.json')
  await writeFile(file, typeof value === 'string' ? value : JSON.stringify(value))
  return file
}

t.test('defaults', async (t) => {
  const config = loadConfig({ env: {} })
  t.equal(config.mqtt.port, 1883)
  t.equal(config.http.port, 8080)
  t.equal(config.http.wsPath, '/mqtt')
  t.equal(config.dataDir, './data')
  t.equal(config.listen.host, '0.0.0.0')
  t.equal(config.log.level, 'info')
  t.same(config.auth.jwt.keys, [])
  t.equal(config.auth.jwt.issuer, null)
  t.equal(config.auth.jwt.audience, null)
  t.equal(config.auth.jwt.clockToleranceSec, 30)
  t.equal(config.auth.jwt.maxTokenBytes, 8192)
  t.same(config.auth.anonymous, { enabled: false, acl: { pub: [], sub: [] } })
  t.same(config.tls, { certFile: null, keyFile: null, mqttPort: 8883, httpsPort: 8443 })
})

t.test('environment variables', async (t) => {
  t.test('each HERALD_* variable sets its key', async (t) => {
    const config = loadConfig({
      env: {
        HERALD_MQTT_PORT: '1999',
        HERALD_HTTP_PORT: '0',
        HERALD_DATA_DIR: '/var/lib/herald',
        HERALD_LOG_LEVEL: 'debug',
        HERALD_LISTEN_HOST: '127.0.0.1',
        HERALD_JWT_SECRET: SECRET,
      },
    })
    t.equal(config.mqtt.port, 1999)
    t.equal(config.http.port, 0)
    t.equal(config.dataDir, '/var/lib/herald')
    t.equal(config.log.level, 'debug')
    t.equal(config.listen.host, '127.0.0.1')
    t.equal(config.auth.jwt.keys.length, 1)
    t.match(config.auth.jwt.keys[0], { alg: 'HS256', secret: SECRET, secretFile: null, kid: null })
  })

  t.test('empty variables are ignored', async (t) => {
    const config = loadConfig({ env: { HERALD_MQTT_PORT: '', HERALD_JWT_SECRET: '', HERALD_CONFIG: '' } })
    t.equal(config.mqtt.port, 1883)
    t.same(config.auth.jwt.keys, [])
  })

  t.test('HERALD_CONFIG names the file; variables override it; HERALD_JWT_SECRET replaces its keys', async (t) => {
    const file = await writeJson(t, {
      mqtt: { port: 1900 },
      http: { port: 8100 },
      auth: { jwt: { keys: [{ kid: 'from-file', alg: 'HS256', secret: 'x'.repeat(40) }] } },
    })
    const fromFile = loadConfig({ env: { HERALD_CONFIG: file } })
    t.equal(fromFile.mqtt.port, 1900)
    t.equal(fromFile.auth.jwt.keys[0]?.kid, 'from-file')

    const overridden = loadConfig({ env: { HERALD_CONFIG: file, HERALD_MQTT_PORT: '1901', HERALD_JWT_SECRET: SECRET } })
    t.equal(overridden.mqtt.port, 1901)
    t.equal(overridden.http.port, 8100, 'keys no variable sets keep the file value')
    t.same(overridden.auth.jwt.keys.map((k) => [k.kid, k.secret]), [[null, SECRET]])
  })

  t.test('a non-numeric port variable is reported by its name', async (t) => {
    t.same(problemsOf(t, { env: { HERALD_MQTT_PORT: 'abc' } }), ['HERALD_MQTT_PORT: must be a whole number'])
    t.same(problemsOf(t, { env: { HERALD_HTTP_PORT: '-1' } }), ['HERALD_HTTP_PORT: must be a whole number'])
  })

  t.test('an out-of-range port variable is reported by its key', async (t) => {
    const problems = problemsOf(t, { env: { HERALD_MQTT_PORT: '70000' } })
    t.ok(problems.length > 0)
    t.ok(problems.every((p) => p.startsWith('mqtt.port: ')), problems.join('; '))
  })

  t.test('a short HERALD_JWT_SECRET is refused', async (t) => {
    t.same(problemsOf(t, { env: { HERALD_JWT_SECRET: 'short' } }), ['auth.jwt.keys[0].secret: must be at least 32 bytes'])
  })
})

t.test('file and overrides', async (t) => {
  const file = await writeJson(t, { mqtt: { port: 1900 }, http: { port: 8100, wsPath: '/ws' }, log: { level: 'warn' } })

  t.test('the file sets keys; the rest keep their defaults', async (t) => {
    const config = loadConfig({ file, env: {} })
    t.equal(config.mqtt.port, 1900)
    t.equal(config.http.wsPath, '/ws')
    t.equal(config.dataDir, './data')
  })

  t.test('overrides are deep-merged last, over the file and the environment', async (t) => {
    const config = loadConfig({ file, env: { HERALD_HTTP_PORT: '8200', HERALD_LOG_LEVEL: 'error' }, overrides: { http: { port: 0 }, dataDir: '/tmp/x' } })
    t.equal(config.http.port, 0, 'override beats the variable and the file')
    t.equal(config.http.wsPath, '/ws', 'siblings of an overridden key are kept')
    t.equal(config.log.level, 'error', 'the variable beats the file')
    t.equal(config.mqtt.port, 1900)
    t.equal(config.dataDir, '/tmp/x')
  })

  t.test('an explicit file wins over HERALD_CONFIG', async (t) => {
    const other = await writeJson(t, { mqtt: { port: 1777 } })
    t.equal(loadConfig({ file, env: { HERALD_CONFIG: other } }).mqtt.port, 1900)
  })

  t.test('a missing file, bad JSON, or JSON that is not an object', async (t) => {
    const dir = await makeTempDir(t)
    const missing = join(dir, 'nope.json')
    t.same(problemsOf(t, { file: missing }), [`${missing}: cannot read config file`])
    const bad = await writeJson(t, '{"mqtt": ')
    const [problem] = problemsOf(t, { file: bad })
    t.ok(problem?.startsWith(`${bad}: not valid JSON`), String(problem))
    const list = await writeJson(t, [1, 2])
    t.same(problemsOf(t, { file: list }), [`${list}: the config file must hold a JSON object`])
  })
})

t.test('unknown keys are reported with their path', async (t) => {
  t.same(problemsOf(t, { overrides: { foo: 1 } }), ['foo: unknown key'])
  t.same(problemsOf(t, { overrides: { mqtt: { prot: 1883 } } }), ['mqtt.prot: unknown key'])
  t.same(problemsOf(t, { overrides: { auth: { jwt: { keys: [{ kid: 'a', alg: 'HS256', secret: SECRET, colour: 'red' }] } } } }), ['auth.jwt.keys[0].colour: unknown key'])

  t.test('every problem is reported at once', async (t) => {
    const file = await writeJson(t, { foo: 1, mqtt: { prot: 1 }, http: { port: 'x' } })
    const problems = problemsOf(t, { file })
    t.ok(problems.includes('foo: unknown key'), 'foo')
    t.ok(problems.includes('mqtt.prot: unknown key'), 'mqtt.prot')
    t.ok(problems.some((p) => p.startsWith('http.port: ')), 'http.port')
  })
})

t.test('values of the wrong type or range are reported with their path', async (t) => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['mqtt.port', { mqtt: { port: '1883' } }],
    ['mqtt.port', { mqtt: { port: 65536 } }],
    ['http.port', { http: { port: 80.5 } }],
    ['http.wsPath', { http: { wsPath: 'mqtt' } }],
    ['log.level', { log: { level: 'loud' } }],
    ['dataDir', { dataDir: 42 }],
    ['auth.anonymous.enabled', { auth: { anonymous: { enabled: 'yes' } } }],
    ['auth.jwt.clockToleranceSec', { auth: { jwt: { clockToleranceSec: -1 } } }],
    ['auth.jwt.keys[0].alg', { auth: { jwt: { keys: [{ alg: 'HS512', secret: SECRET }] } } }],
    ['acl.rules[0].principal', { acl: { rules: [{ principal: 'everyone', sub: ['x'] }] } }],
  ]
  for (const [path, overrides] of cases) {
    const problems = problemsOf(t, { overrides })
    t.ok(problems.length > 0 && problems.every((p) => p.startsWith(`${path}: `)), `${path}: ${problems.join('; ')}`)
  }
})

t.test('semantic checks', async (t) => {
  const dir = await makeTempDir(t)
  // a real pair: the PEM checks (src/config/check-files.ts, test/cli/check-config.test.ts) pass it
  const cert = fileURLToPath(new URL('../fixtures/tls/cert.pem', import.meta.url))
  const key = fileURLToPath(new URL('../fixtures/tls/key.pem', import.meta.url))
  const keys = (list: unknown[]): Record<string, unknown> => ({ auth: { jwt: { keys: list } } })

  t.same(problemsOf(t, { overrides: keys([{ alg: 'HS256', secret: 'too-short' }]) }), ['auth.jwt.keys[0].secret: must be at least 32 bytes'])
  t.same(problemsOf(t, { overrides: keys([{ alg: 'HS256', secretFile: join(dir, 'missing') }]) }), ['auth.jwt.keys[0].secretFile: file not found'])
  t.same(problemsOf(t, { overrides: keys([{ alg: 'RS256', publicKeyFile: join(dir, 'missing.pem') }]) }), ['auth.jwt.keys[0].publicKeyFile: file not found'])
  t.same(problemsOf(t, { overrides: keys([{ alg: 'HS256' }]) }), ['auth.jwt.keys[0]: HS256 needs exactly one of secret, secretFile'])
  t.same(problemsOf(t, { overrides: keys([{ alg: 'HS256', secret: SECRET, secretFile: cert }]) }), ['auth.jwt.keys[0]: HS256 needs exactly one of secret, secretFile'])
  t.same(problemsOf(t, { overrides: keys([{ alg: 'ES256', secret: SECRET }]) }), [
    'auth.jwt.keys[0]: ES256 needs exactly one of publicKey, publicKeyFile',
    'auth.jwt.keys[0]: ES256 takes no secret',
  ])
  t.same(problemsOf(t, { overrides: keys([{ kid: 'a', alg: 'HS256', secret: SECRET }, { kid: 'a', alg: 'HS256', secret: SECRET }]) }), ['auth.jwt.keys: two keys share a kid'])
  t.same(problemsOf(t, { overrides: keys([{ kid: 'a', alg: 'HS256', secret: SECRET }, { alg: 'HS256', secret: SECRET }]) }), ['auth.jwt.keys: with several keys, each needs a kid'])
  t.same(problemsOf(t, { overrides: { tls: { certFile: cert } } }), ['tls: certFile and keyFile go together'])
  t.same(problemsOf(t, { overrides: { tls: { keyFile: key } } }), ['tls: certFile and keyFile go together'])
  t.same(problemsOf(t, { overrides: { tls: { certFile: join(dir, 'gone.pem'), keyFile: key } } }), ['tls.certFile: file not found'])
  t.equal(loadConfig({ env: {}, overrides: { tls: { certFile: cert, keyFile: key } } }).tls.certFile, cert, 'both present is fine')
  t.same(problemsOf(t, { overrides: { http: { headersTimeoutMs: 5000, requestTimeoutMs: 1000 } } }), ['http.headersTimeoutMs: must not exceed http.requestTimeoutMs'])
})

t.test('ConfigError lists every problem in its message', async (t) => {
  try {
    loadConfig({ env: {}, overrides: { foo: 1, bar: 2 } })
    t.fail('expected a ConfigError')
  } catch (err) {
    t.ok(err instanceof ConfigError)
    const { message, problems } = err as ConfigError
    t.same([...problems].sort(), ['bar: unknown key', 'foo: unknown key'])
    for (const problem of problems) t.ok(message.includes(problem), problem)
  }
})

t.test('the config is frozen all the way down', async (t) => {
  const config = loadConfig({ env: {}, overrides: { auth: { jwt: { keys: [{ kid: 'k', alg: 'HS256', secret: SECRET }] } } } })
  for (const node of [config, config.mqtt, config.auth, config.auth.jwt, config.auth.jwt.keys, config.auth.jwt.keys[0], config.acl.rules, config.limits.connectRatePerIp]) {
    t.ok(Object.isFrozen(node))
  }
  t.throws(() => { (config.mqtt as { port: number }).port = 1 }, TypeError)
  t.throws(() => { (config.auth.jwt.keys as unknown[]).push({}) }, TypeError)
  t.equal(config.mqtt.port, 1883)

  t.test('overrides passed in are not frozen or changed', async (t) => {
    const overrides = { mqtt: { port: 1234 } }
    loadConfig({ env: {}, overrides })
    t.notOk(Object.isFrozen(overrides.mqtt))
    t.same(overrides, { mqtt: { port: 1234 } })
  })
})

const defaultJson = fileURLToPath(new URL('../../config/default.json', import.meta.url))
t.test('config/default.json holds the schema defaults', { skip: !existsSync(defaultJson) && 'config/default.json does not exist yet' }, async (t) => {
  const file = defaultJson
  const defaults = loadConfig({ env: {} })
  const documented = JSON.parse(readFileSync(file, 'utf8')) as unknown
  t.strictSame(documented, JSON.parse(JSON.stringify(defaults)), 'field for field, no more and no less')
  t.strictSame(loadConfig({ file, env: {} }), defaults, 'and loads to the same config')
})
