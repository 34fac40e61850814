import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import jwt from 'jsonwebtoken'
import t, { type Test } from 'tap'
import { createTokenVerifier } from '../../src/auth/index.js'
import { loadConfig } from '../../src/config/index.js'
import type { ListeningPorts } from '../../src/server.js'
import { connect, makeTempDir, nextMessage } from '../helpers/broker.js'
import { readUntil } from './cli-helpers.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const heraldBin = join(root, 'bin', 'herald.js')
const SECRET = 'a-cli-test-secret-that-is-at-least-32-bytes'

interface Finished { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** A clean environment: only what the test sets, so the runner's HERALD_* variables cannot leak in. */
function cleanEnv (env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', ...env }
}

/** Spawns the CLI; the child is killed at teardown if it is still running. */
interface Exit { code: number | null, signal: NodeJS.Signals | null }

/**
 * Spawns the CLI; the child is killed at teardown if it is still running.
 * `exited` is the 'exit' event; `closed` comes after it, once stdout and stderr have ended.
 */
function spawnCli (t: Test, args: string[], env: Record<string, string>, cwd: string): { child: ChildProcess, exited: Promise<Exit>, closed: Promise<Exit> } {
  return spawnProcess(t, process.execPath, [heraldBin, ...args], env, cwd)
}

function spawnProcess (t: Test, file: string, args: string[], env: Record<string, string>, cwd: string): { child: ChildProcess, exited: Promise<Exit>, closed: Promise<Exit> } {
  const child = spawn(file, args, { cwd, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const closed = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  closed.catch(() => {}) // a spawn error also shows up as a missing exit below
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await closed.catch(() => {})
  })
  return { child, exited, closed }
}

/** Runs a CLI command to completion ('close': the exit code and all of stdout/stderr). */
async function run (t: Test, args: string[], env: Record<string, string> = {}): Promise<Finished> {
  const cwd = await makeTempDir(t, 'herald-cli-')
  const { child, closed } = spawnCli(t, args, env, cwd)
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  return { ...await closed, stdout, stderr }
}

async function writeJson (t: Test, value: unknown): Promise<string> {
  const file = join(await makeTempDir(t, 'herald-cli-config-'), 'herald.json')
  await writeFile(file, JSON.stringify(value))
  return file
}

const decode = (token: string): jwt.Jwt => jwt.decode(token, { complete: true }) as jwt.Jwt
const jwtPattern = /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/

/** script(1) of util-linux runs a command on a pseudo-terminal: a person watching, as far as the command can tell. */
const hasScript = spawnSync('script', ['-V'], { stdio: 'ignore' }).status === 0
const shellQuote = (arg: string): string => `'${arg.replace(/'/g, "'\\''")}'`

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('--version prints the package version', async (t) => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
    const result = await run(t, ['--version'])
    t.equal(result.code, 0)
    t.equal(result.stdout, `${pkg.version}\n`)
  })

  t.test('check-config', async (t) => {
    t.test('a bad file exits 1 and names each key', async (t) => {
      const file = await writeJson(t, { mqtt: { port: 'x' }, foo: 1 })
      const result = await run(t, ['check-config', file])
      t.equal(result.code, 1)
      t.match(result.stderr, /^\s*mqtt\.port: /m)
      t.match(result.stderr, /^\s*foo: unknown key$/m)
      t.equal(result.stdout, '')
    })

    t.test('a semantic problem is named by its key too', async (t) => {
      const file = await writeJson(t, { auth: { jwt: { keys: [{ alg: 'HS256', secretFile: '/nonexistent/herald-secret' }] } } })
      const result = await run(t, ['check-config', file])
      t.equal(result.code, 1)
      t.match(result.stderr, /auth\.jwt\.keys\[0\]\.secretFile: file not found/)
    })

    t.test('HERALD_* variables are checked as well', async (t) => {
      const result = await run(t, ['check-config'], { HERALD_MQTT_PORT: 'abc' })
      t.equal(result.code, 1)
      t.match(result.stderr, /HERALD_MQTT_PORT: must be a whole number/)
    })

    t.test('a good file exits 0', async (t) => {
      const file = await writeJson(t, { mqtt: { port: 1999 }, auth: { jwt: { keys: [{ kid: 'k1', alg: 'HS256', secret: SECRET }] } } })
      const result = await run(t, ['check-config', file])
      t.equal(result.code, 0, result.stderr)
      t.equal(result.stdout, `configuration is valid (${file})\n`)
      t.equal(result.stderr, '')
    })
  })

  t.test('token signs with the configured HS256 key', async (t) => {
    const config = { auth: { jwt: { keys: [{ kid: 'k1', alg: 'HS256', secret: SECRET }] } } }
    const file = await writeJson(t, config)
    const result = await run(t, ['token', '--sub', 'alice', '--role', 'admin', '--config', file])
    t.equal(result.code, 0, result.stderr)
    const token = result.stdout.trim()
    t.equal(result.stdout, `${token}\n`, 'one line, the token alone')

    const claims = jwt.verify(token, SECRET, { algorithms: ['HS256'] }) as jwt.JwtPayload
    t.equal(claims.sub, 'alice')
    t.equal(claims.role, 'admin')
    t.equal((claims.exp ?? 0) - (claims.iat ?? 0), 3600, 'default ttl 1h')
    t.equal(decode(token).header.kid, 'k1')
    // and the broker's own verifier, configured from the same file, accepts it
    const principal = createTokenVerifier(loadConfig({ file, env: {} }).auth.jwt).verify(token)
    t.match(principal, { sub: 'alice', role: 'admin' })

    t.test('an unknown role is refused', async (t) => {
      const refused = await run(t, ['token', '--sub', 'alice', '--role', 'root', '--config', file])
      t.equal(refused.code, 2)
      t.match(refused.stderr, /--role/)
      t.equal(refused.stdout, '')
    })

    t.test('a token the broker would refuse is not printed', async (t) => {
      const never = await run(t, ['token', '--sub', 'alice', '--ttl', 'never', '--config', file])
      t.equal(never.code, 2)
      t.match(never.stderr, /^--ttl never: .*auth\.jwt\.requireExp/)
      t.equal(never.stdout, '')
      const long = await run(t, ['token', '--sub', 'alice', '--ttl', '90d', '--config', file])
      t.equal(long.code, 2)
      t.match(long.stderr, /^--ttl 90d: .*auth\.jwt\.maxTtlSec/)
      t.equal(long.stdout, '')
      t.equal((await run(t, ['token', '--sub', 'alice', '--ttl', '30d', '--config', file])).code, 0, '30 days is the default bound')

      const lax = await writeJson(t, { auth: { jwt: { ...config.auth.jwt, requireExp: false } } })
      const forever = await run(t, ['token', '--sub', 'alice', '--ttl', 'never', '--config', lax])
      t.equal(forever.code, 0, forever.stderr)
      t.notOk('exp' in (decode(forever.stdout.trim()).payload as jwt.JwtPayload), 'no exp where the broker accepts that')
    })
  })

  t.test('start without keys: local secret, admin token, MQTT, clean SIGTERM', { timeout: 60000 }, async (t) => {
    const dataDir = await makeTempDir(t, 'herald-cli-data-')
    const env = { HERALD_DATA_DIR: dataDir, HERALD_MQTT_PORT: '0', HERALD_HTTP_PORT: '0', HERALD_LISTEN_HOST: '127.0.0.1' }

    await t.test('token before the first start has no key to sign with', async (t) => {
      const result = await run(t, ['token', '--sub', 'bob'], env)
      t.equal(result.code, 1)
      t.match(result.stderr, /^auth\.jwt\.keys: /)
    })

    const { child, exited, closed } = spawnCli(t, ['start'], env, dataDir)
    let stdout = ''
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const died = exited.then(({ code, signal }) => { throw new Error(`herald start exited (${code ?? signal ?? '?'}) early:\n${stderr}`) })
    died.catch(() => {}) // only awaited through the races below

    const ports = new Promise<ListeningPorts>((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        stdout += line + '\n'
        try {
          const entry = JSON.parse(line) as { msg?: string, ports?: ListeningPorts }
          if (entry.msg === 'herald listening' && entry.ports !== undefined) resolve(entry.ports)
        } catch {
          // not a log line
        }
      })
    })
    const quickStart = new Promise<string>((resolve) => {
      const onData = (): void => {
        const match = /Admin token[^\n]*\n\s+(\S+)\n/.exec(stderr)
        if (match?.[1] === undefined) return
        child.stderr?.off('data', onData)
        resolve(match[1])
      }
      child.stderr?.on('data', onData)
    })

    const { mqtt } = await Promise.race([ports, died])
    const token = await Promise.race([quickStart, died])
    t.match(stderr, /Herald is ready/)
    t.match(stderr, new RegExp(`mqtt://127\\.0\\.0\\.1:${mqtt}\\b`))

    const secretFile = join(dataDir, 'jwt-secret')
    t.ok(existsSync(secretFile), '<dataDir>/jwt-secret was created')
    t.equal(statSync(secretFile).mode & 0o777, 0o600, 'readable by the owner only')
    const secret = readFileSync(secretFile, 'utf8').trim()
    const claims = jwt.verify(token, secret, { algorithms: ['HS256'] }) as jwt.JwtPayload
    t.match(claims, { sub: 'admin', role: 'admin' })

    const client = await connect(t, `mqtt://127.0.0.1:${mqtt}`, { clientId: 'cli-admin', username: 'admin', password: token })
    await client.subscribeAsync('users/admin/hello', { qos: 1 })
    const received = nextMessage(client, 'users/admin/hello')
    await client.publishAsync('users/admin/hello', 'hi', { qos: 1 })
    t.equal((await received).payload.toString(), 'hi', 'the printed token works over MQTT')
    t.notOk(stdout.includes(token), 'the token is printed for the user, never logged')

    const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    child.kill('SIGTERM')
    t.same(await exited, { code: 0, signal: null }, 'SIGTERM exits 0')
    await clientClosed
    await closed
    t.match(stdout, /"msg":"herald stopped"/)

    await t.test('token afterwards signs with the local secret', async (t) => {
      const result = await run(t, ['token', '--sub', 'bob'], env)
      t.equal(result.code, 0, result.stderr)
      const bob = jwt.verify(result.stdout.trim(), secret, { algorithms: ['HS256'] }) as jwt.JwtPayload
      t.match(bob, { sub: 'bob', role: 'device' })
      t.equal(decode(result.stdout.trim()).header.kid, 'local')
    })

    // stderr goes to journald and container logs, which keep what they get
    await t.test('a later start without a terminal prints no token, only how to mint one', async (t) => {
      const { child, exited, closed } = spawnCli(t, ['start'], env, dataDir)
      let stdout = ''
      child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
      const banner = readUntil(child.stderr, /^Try: /m)
      const died = exited.then(({ code, signal }) => { throw new Error(`herald start exited (${code ?? signal ?? '?'}) early`) })
      died.catch(() => {})
      const text = await Promise.race([banner, died])
      t.match(text, /Herald is ready/)
      t.notMatch(text, jwtPattern, 'no token on stderr')
      t.match(text, /^Admin token not printed \(stderr is not a terminal\): mint one with `herald token --sub admin --role admin`$/m)
      child.kill('SIGTERM')
      t.same(await exited, { code: 0, signal: null })
      await closed
      t.notMatch(stdout, jwtPattern, 'nor in the log')
    })

    await t.test('a later start on a terminal prints the token', { skip: hasScript ? false : 'needs script(1) (util-linux) for a pseudo-terminal' }, async (t) => {
      const command = [process.execPath, heraldBin, 'start'].map(shellQuote).join(' ')
      const { child, exited, closed } = spawnProcess(t, 'script', ['-qec', command, '/dev/null'], env, dataDir)
      // the terminal carries stdout and stderr both, with CRLF line ends
      const output = readUntil(child.stdout, /^Try: /m)
      const died = exited.then(({ code, signal }) => { throw new Error(`script exited (${code ?? signal ?? '?'}) early`) })
      died.catch(() => {})
      const text = await Promise.race([output, died])
      const token = /Admin token[^\n]*\n\s+(\S+)/.exec(text)?.[1]
      t.ok(token !== undefined, 'an admin token is printed')
      t.match(jwt.verify(token ?? '', secret, { algorithms: ['HS256'] }), { sub: 'admin', role: 'admin' })
      // script(1) ends the command it runs on SIGTERM
      child.kill('SIGTERM')
      await exited
      await closed
    })
  })
}
