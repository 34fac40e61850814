import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { benchDistDir, repoRoot } from './paths.js'
import { BENCH_GRANTS, type TokenSigner } from './tokens.js'

export const HOST = '127.0.0.1'
/** The Herald tree to run (bin/herald.js and dist/): this repository unless --herald-dir names another build, for A/B runs. */
export function heraldDir (): string { return process.env['HERALD_BENCH_DIR'] ?? repoRoot }
/** Config keys merged into the config file of this build's Herald brokers (--herald-config). */
function heraldConfigOverride (): Record<string, unknown> | undefined {
  const json = process.env['HERALD_BENCH_CONFIG']
  return json === undefined || json === '' ? undefined : JSON.parse(json) as Record<string, unknown>
}
export const MOSQUITTO_BIN = process.env['MOSQUITTO_BIN'] ?? '/usr/sbin/mosquitto'

export interface BrokerStartOptions {
  readonly tokens: TokenSigner
  /** merged into Herald's config file: how a phase points Herald at its fakes (relay endpoints, …) */
  readonly heraldConfig?: Record<string, unknown> | undefined
  /** write a V8 CPU profile of the broker process here (node brokers only) */
  readonly cpuProfileDir?: string | undefined
}

export interface Credentials {
  readonly username?: string
  readonly password?: string
}

export interface RunningBroker {
  readonly name: string
  readonly pid: number
  readonly host: string
  readonly mqttPort: number
  /** Herald's HTTP port; undefined for brokers without an HTTP bridge */
  readonly httpPort: number | undefined
  /** CONNECT credentials of bench client `n` */
  credentials (n: number): Credentials
  /** true once the process has exited (a crash during a phase fails the phase) */
  readonly exited: boolean
  stderrTail (): string
  stop (): Promise<void>
}

export interface BrokerDefinition {
  /** id used by --brokers and in the JSON document */
  readonly name: string
  /** column title in the table */
  readonly label: string
  /** has Herald's HTTP bridge */
  readonly http: boolean
  /** a reason to skip this broker on this machine, or undefined */
  unavailable (): string | undefined
  version (): string
  start (options: BrokerStartOptions): Promise<RunningBroker>
}

const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** A free TCP port on the loopback (bound then released; nothing else here takes ports in between). */
export async function freePort (host = HOST): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

async function waitFor (what: string, child: ChildProcess, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited during start (${child.exitCode ?? child.signalCode})`)
    if (await probe()) return
    await sleep(50)
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`)
}

async function tcpAccepts (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = connect({ host: HOST, port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

async function httpReady (port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://${HOST}:${port}/readyz`, { signal: AbortSignal.timeout(1000) })
    await res.arrayBuffer()
    return res.status === 200
  } catch {
    return false
  }
}

function launch (name: string, command: string, args: string[], env: NodeJS.ProcessEnv, tmp: string): { child: ChildProcess, tail: () => string } {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: repoRoot })
  children.add(child)
  child.once('exit', () => children.delete(child))
  let tail = ''
  const keep = (chunk: Buffer): void => { tail = (tail + chunk.toString('utf8')).slice(-4000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command} (in ${tmp})`)
  return { child, tail: () => tail }
}

function runningBroker (name: string, child: ChildProcess, tail: () => string, tmp: string, ports: { mqtt: number, http?: number },
  credentials: (n: number) => Credentials, graceMs: number): RunningBroker {
  let exited = false
  let status = ''
  const exit = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { exited = true; resolve(); return }
    child.once('exit', (code, signal) => {
      exited = true
      status = signal !== null ? `killed by ${signal}` : `exit code ${code ?? '?'}`
      resolve()
    })
  })
  return {
    name,
    pid: child.pid as number,
    host: HOST,
    mqttPort: ports.mqtt,
    httpPort: ports.http,
    credentials,
    get exited () { return exited },
    stderrTail: () => `${status !== '' ? `[${status}] ` : ''}${tail()}`,
    async stop () {
      if (!exited) {
        child.kill('SIGTERM')
        const graceful = await Promise.race([exit.then(() => true), sleep(graceMs).then(() => false)])
        if (!graceful) {
          child.kill('SIGKILL')
          await Promise.race([exit, sleep(5000)])
        }
      }
      rmSync(tmp, { recursive: true, force: true })
    },
  }
}

function packageVersion (pkg: string): string {
  try {
    const json = JSON.parse(readFileSync(join(repoRoot, 'node_modules', pkg, 'package.json'), 'utf8')) as { version?: string }
    return json.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

function heraldVersion (dir: string): string {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string }
  const git = spawnSync('git', ['describe', '--always', '--dirty'], { cwd: dir, encoding: 'utf8' })
  const rev = git.status === 0 ? git.stdout.trim() : 'no-git'
  const where = dir === repoRoot ? '' : ` from ${dir}`
  return `${pkg.version ?? '?'} (${rev}${where}; aedes ${packageVersion('aedes')}, aedes-persistence-level ${packageVersion('aedes-persistence-level')})`
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function deepMerge (base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key]
    out[key] = isObject(current) && isObject(value) ? deepMerge(current, value) : value
  }
  return out
}

const heraldVariants = {
  jwt: { name: 'herald', label: 'Herald' },
  anonymous: { name: 'herald-anon', label: 'Herald (no JWT)' },
  bare: { name: 'herald-bare', label: 'Herald (no JWT, ACL, LevelDB)' },
} as const

/**
 * Herald as it runs in production: JWT on every CONNECT, the ACL, LevelDB in
 * a fresh data directory. Only the limits that would throttle a load
 * generator on one address are raised (CONNECT rate per IP, connections per
 * user, HTTP requests per IP).
 */
function heraldDefinition (variant: 'jwt' | 'anonymous' | 'bare', build?: { dir: string, name: string, label: string, config?: Record<string, unknown> | undefined }): BrokerDefinition {
  const anonymous = variant !== 'jwt'
  const dir = (): string => build?.dir ?? heraldDir()
  return {
    name: build?.name ?? heraldVariants[variant].name,
    label: build?.label ?? heraldVariants[variant].label,
    http: true,
    unavailable: () => existsSync(join(dir(), 'dist', 'src', 'cli', 'index.js')) ? undefined : `${dir()}/dist is missing: run \`npm run build\``,
    version: () => heraldVersion(dir()),
    async start (options) {
      const tmp = mkdtempSync(join(tmpdir(), 'herald-bench-'))
      const mqtt = await freePort()
      const http = await freePort()
      let config: Record<string, unknown> = {
        limits: { connectRatePerIp: { points: 1_000_000, windowSec: 1 }, maxConnectionsPerUser: 1_000_000 },
        http: { rateLimit: { max: 100_000_000, windowSec: 1 } },
      }
      // herald-anon: the same broker with JWT verification off (anonymous principal with the bench grants),
      // to see what authentication costs; the ACL and LevelDB stay on
      if (variant === 'anonymous') config = deepMerge(config, { auth: { anonymous: { enabled: true, acl: BENCH_GRANTS } } })
      // herald-bare: Herald with its features off, the baseline of "auth + ACL + persistence cost < 10%":
      // no JWT, a grant of every topic (the ACL answers at its first rule), and the in-memory store
      if (variant === 'bare') config = deepMerge(config, { auth: { anonymous: { enabled: true, acl: { pub: ['#'], sub: ['#'] } } }, storage: { engine: 'memory' } })
      // --herald-config (this build's brokers) or --compare-config (herald-b): an A/B of a setting
      const override = build !== undefined ? build.config : heraldConfigOverride()
      if (override !== undefined) config = deepMerge(config, override)
      if (options.heraldConfig !== undefined) config = deepMerge(config, options.heraldConfig)
      writeFileSync(join(tmp, 'config.json'), JSON.stringify(config, null, 2))
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        HERALD_CONFIG: join(tmp, 'config.json'),
        HERALD_DATA_DIR: join(tmp, 'data'),
        HERALD_MQTT_PORT: String(mqtt),
        HERALD_HTTP_PORT: String(http),
        HERALD_LISTEN_HOST: HOST,
        HERALD_JWT_SECRET: options.tokens.secret,
        HERALD_LOG_LEVEL: 'warn',
      }
      const nodeArgs = options.cpuProfileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : []
      // node/V8 flags for one Herald build only (an A/B of runtime flags): HERALD_NODE_ARGS, HERALD_B_NODE_ARGS for --compare's build
      const extraArgs = process.env[build !== undefined ? 'HERALD_B_NODE_ARGS' : 'HERALD_NODE_ARGS']
      if (extraArgs !== undefined && extraArgs.trim() !== '') nodeArgs.push(...extraArgs.trim().split(/\s+/))
      const { child, tail } = launch('herald', process.execPath, [...nodeArgs, join(dir(), 'bin', 'herald.js'), 'start'], env, tmp)
      await waitFor('herald', child, 30_000, async () => await httpReady(http))
      const credentials = anonymous
        ? () => ({})
        : (n: number) => ({ username: `bench-${n}`, password: options.tokens.device(n) })
      return runningBroker(this.name, child, tail, tmp, { mqtt, http }, credentials, options.cpuProfileDir !== undefined ? 30_000 : 3000)
    },
  }
}

const aedesBare: BrokerDefinition = {
  name: 'aedes',
  label: 'aedes',
  http: false,
  unavailable: () => existsSync(join(benchDistDir, 'brokers', 'aedes-bare.js')) ? undefined : 'bench is not compiled',
  version: () => packageVersion('aedes'),
  async start (options) {
    const tmp = mkdtempSync(join(tmpdir(), 'aedes-bench-'))
    const port = await freePort()
    const nodeArgs = options.cpuProfileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : []
    const { child, tail } = launch('aedes', process.execPath, [...nodeArgs, join(benchDistDir, 'brokers', 'aedes-bare.js'), String(port), HOST], process.env, tmp)
    await waitFor('aedes', child, 15_000, async () => await tcpAccepts(port))
    return runningBroker(this.name, child, tail, tmp, { mqtt: port }, () => ({}), options.cpuProfileDir !== undefined ? 30_000 : 3000)
  },
}

const mosquitto: BrokerDefinition = {
  name: 'mosquitto',
  label: 'Mosquitto',
  http: false,
  unavailable: () => existsSync(MOSQUITTO_BIN) ? undefined : `${MOSQUITTO_BIN} not found (apt-get install -y mosquitto)`,
  version () {
    const out = spawnSync(MOSQUITTO_BIN, ['-h'], { encoding: 'utf8' })
    return /mosquitto version (\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown'
  },
  async start () {
    const tmp = mkdtempSync(join(tmpdir(), 'mosquitto-bench-'))
    const port = await freePort()
    const conf = join(tmp, 'mosquitto.conf')
    // minimal: anonymous, no persistence, queues large enough that QoS 1 runs never drop
    writeFileSync(conf, [
      `listener ${port} ${HOST}`,
      'allow_anonymous true',
      'persistence false',
      'max_queued_messages 1000000',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'))
    const { child, tail } = launch('mosquitto', MOSQUITTO_BIN, ['-c', conf], process.env, tmp)
    await waitFor('mosquitto', child, 15_000, async () => await tcpAccepts(port))
    return runningBroker(this.name, child, tail, tmp, { mqtt: port }, () => ({}), 3000)
  },
}

/**
 * Another Herald build (its bin/herald.js and dist/) as one more broker, `herald-b`, alternated with the
 * others: an A/B run. `config` is merged into its config file: the same build with another setting.
 */
export function heraldBuild (dir: string, config?: Record<string, unknown>): BrokerDefinition {
  return heraldDefinition('jwt', { dir, name: 'herald-b', label: 'Herald B', config })
}

/** Every broker the bench knows; `--brokers` picks among them (default: herald, aedes, mosquitto). */
export const brokerRegistry: readonly BrokerDefinition[] = [heraldDefinition('jwt'), heraldDefinition('anonymous'), heraldDefinition('bare'), aedesBare, mosquitto]
export const defaultBrokers = ['herald', 'herald-bare', 'aedes', 'mosquitto']
