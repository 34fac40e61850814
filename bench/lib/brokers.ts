import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { benchDistDir, repoRoot } from './paths.js'
import { redisVersion, startRedisServer, type BenchRedis } from './redis.js'
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
/** Worker processes of the `herald-cluster` broker (--cluster-workers). */
export function clusterWorkers (): number { return Number(process.env['HERALD_BENCH_CLUSTER_WORKERS'] ?? 3) }
/** The key prefix the cluster brokers run with (Herald's default), to read the cluster presence. */
const CLUSTER_KEY_PREFIX = 'herald:'

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
  /** the process the bench started (a cluster's primary) */
  readonly pid: number
  /** every process whose CPU and memory are the broker's: `pid`, and a cluster's workers (not its redis-server) */
  processIds (): readonly number[]
  /** processes that hold client connections: 1, or a cluster's workers */
  readonly workers: number
  /** the redis-server of a cluster broker, reported apart (its CPU per message) */
  readonly redisPid?: number | undefined
  /** the node holding each client id's connection (the cluster presence in Redis); undefined for a broker of one process */
  nodesOf? (clientIds: readonly string[]): Promise<Array<string | null>>
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
  /** processes that hold client connections (each has its own open-files limit): 1, or a cluster's workers */
  readonly workers: number
  /** runs on a redis-server the bench starts (cluster mode) */
  readonly redis: boolean
  /** a reason to skip this broker on this machine, or undefined */
  unavailable (): string | undefined
  version (): string
  start (options: BrokerStartOptions): Promise<RunningBroker>
}

const children = new Set<ChildProcess>()
/** a cluster's workers, not children of this process */
const workerProcesses = new Set<number>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
  for (const pid of workerProcesses) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
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

interface ClusterParts {
  /** the worker processes (several: the primary's children; one: the process itself, not listed) */
  readonly workerPids: readonly number[]
  readonly redis: BenchRedis
}

function alive (pid: number): boolean {
  return existsSync(`/proc/${pid}/stat`)
}

function runningBroker (name: string, child: ChildProcess, tail: () => string, tmp: string, ports: { mqtt: number, http?: number },
  credentials: (n: number) => Credentials, graceMs: number, cluster?: ClusterParts): RunningBroker {
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
  const pid = child.pid as number
  const workerPids = cluster?.workerPids ?? []
  for (const worker of workerPids) workerProcesses.add(worker)
  const redis = cluster?.redis
  return {
    name,
    pid,
    processIds: () => [pid, ...workerPids],
    workers: Math.max(1, workerPids.length),
    redisPid: redis?.pid,
    ...(redis !== undefined && {
      async nodesOf (clientIds: readonly string[]) {
        if (clientIds.length === 0) return []
        // presence value: node \t owner \t connection (src/cluster/presence.ts)
        const values = await redis.client.hmget(`${CLUSTER_KEY_PREFIX}presence`, ...clientIds)
        return values.map((v) => v === null ? null : v.split('\t')[0] ?? null)
      },
    }),
    host: HOST,
    mqttPort: ports.mqtt,
    httpPort: ports.http,
    credentials,
    // a cluster whose worker died (the primary starts another) or whose Redis died failed its phase
    get exited () { return exited || workerPids.some((w) => !alive(w)) || redis?.exited === true },
    stderrTail: () => `${status !== '' ? `[${status}] ` : ''}${workerPids.filter((w) => !alive(w)).map((w) => `[worker ${w} gone] `).join('')}${redis?.exited === true ? '[redis-server gone] ' : ''}${tail()}`,
    async stop () {
      if (!exited) {
        child.kill('SIGTERM')
        const graceful = await Promise.race([exit.then(() => true), sleep(graceMs).then(() => false)])
        if (!graceful) {
          child.kill('SIGKILL')
          await Promise.race([exit, sleep(5000)])
        }
      }
      // workers leave with their primary; one that did not is killed
      for (const worker of workerPids) {
        if (alive(worker)) {
          try { process.kill(worker, 'SIGKILL') } catch {}
        }
        workerProcesses.delete(worker)
      }
      await redis?.stop()
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

type HeraldVariant = 'jwt' | 'anonymous' | 'bare' | 'cluster' | 'cluster-1'

const heraldVariants: Record<HeraldVariant, { readonly name: string, readonly label: () => string }> = {
  jwt: { name: 'herald', label: () => 'Herald' },
  anonymous: { name: 'herald-anon', label: () => 'Herald (no JWT)' },
  bare: { name: 'herald-bare', label: () => 'Herald (no JWT, ACL, LevelDB)' },
  cluster: { name: 'herald-cluster', label: () => `Herald cluster (${clusterWorkers()} workers, Redis)` },
  'cluster-1': { name: 'herald-cluster-1', label: () => 'Herald on Redis (1 node)' },
}

/**
 * The workers of a cluster broker, once every one is ready: /metrics asked
 * over a new connection each time (node:cluster hands each new connection to
 * the next worker in turn) until `workers` different `node` labels answered
 * with `herald_storage_writable` 1 (its Redis connections up and its lease
 * held: what /readyz asks). A worker is handed connections once its
 * listeners are bound (MQTT before HTTP). Node ids are host name and pid
 * (src/backend/redis.ts): the pids of the workers.
 */
async function clusterWorkerPids (port: number, workers: number, child: ChildProcess, timeoutMs: number): Promise<number[]> {
  const nodes = new Set<string>()
  const deadline = Date.now() + timeoutMs
  while (nodes.size < workers) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`herald cluster exited during start (${child.exitCode ?? child.signalCode})`)
    if (Date.now() > deadline) throw new Error(`herald cluster: ${nodes.size} of ${workers} workers answered after ${timeoutMs} ms`)
    const node = await new Promise<string | undefined>((resolve) => {
      const req = get({ host: HOST, port, path: '/metrics', agent: false, timeout: 2000 }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { body += chunk })
        res.on('end', () => resolve(res.statusCode === 200 && /^herald_storage_writable\{[^}]*\} 1$/m.test(body) ? /node="([^"]+)"/.exec(body)?.[1] : undefined))
        res.on('error', () => resolve(undefined))
      })
      req.on('timeout', () => req.destroy())
      req.on('error', () => resolve(undefined))
    })
    if (node !== undefined) nodes.add(node)
    else await sleep(50)
  }
  return [...nodes].map((node) => {
    const pid = Number(node.slice(node.lastIndexOf('-') + 1))
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`herald cluster: no pid in node id ${node}`)
    return pid
  })
}

/**
 * Herald as it runs in production: JWT on every CONNECT, the ACL, LevelDB in
 * a fresh data directory. Only the limits that would throttle a load
 * generator on one address are raised (CONNECT rate per IP, connections per
 * user, HTTP requests per IP).
 */
function heraldDefinition (variant: HeraldVariant, build?: { dir: string, name: string, label: string, config?: Record<string, unknown> | undefined }): BrokerDefinition {
  const anonymous = variant === 'anonymous' || variant === 'bare'
  const onRedis = variant === 'cluster' || variant === 'cluster-1'
  const workers = (): number => variant === 'cluster' ? clusterWorkers() : 1
  const dir = (): string => build?.dir ?? heraldDir()
  return {
    name: build?.name ?? heraldVariants[variant].name,
    get label () { return build?.label ?? heraldVariants[variant].label() },
    http: true,
    get workers () { return workers() },
    redis: onRedis,
    unavailable: () => !existsSync(join(dir(), 'dist', 'src', 'cli', 'index.js'))
      ? `${dir()}/dist is missing: run \`npm run build\``
      : onRedis && redisVersion() === undefined ? 'redis-server not found (apt-get install -y redis-server)' : undefined,
    version: () => `${heraldVersion(dir())}${onRedis ? `, redis-server ${redisVersion() ?? '?'}` : ''}`,
    async start (options) {
      const tmp = mkdtempSync(join(tmpdir(), 'herald-bench-'))
      const mqtt = await freePort()
      const http = await freePort()
      // herald-cluster(-1): the same Herald on a redis-server of its own, started here and stopped with the broker
      const redis = onRedis ? await startRedisServer(await freePort(), children) : undefined
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
      // herald-cluster: cluster.workers processes behind the same ports, every store on Redis; herald-cluster-1: one
      // node on Redis, to tell what Redis costs from what several nodes cost
      if (redis !== undefined) config = deepMerge(config, { cluster: { redis: { url: redis.url }, workers: workers() } })
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
      let child: ChildProcess | undefined
      try {
        const launched = launch('herald', process.execPath, [...nodeArgs, join(dir(), 'bin', 'herald.js'), 'start'], env, tmp)
        child = launched.child
        const started = child
        // a primary and N workers, each connecting to Redis, start slower than one process, the more so on a busy machine
        const startMs = workers() > 1 ? 90_000 : 30_000
        await waitFor('herald', started, startMs, async () => await httpReady(http))
        const workerPids = workers() > 1 ? await clusterWorkerPids(http, workers(), started, startMs) : []
        const credentials = anonymous
          ? () => ({})
          : (n: number) => ({ username: `bench-${n}`, password: options.tokens.device(n) })
        // several workers close their connections one after the other, and each its Redis connections
        const graceMs = options.cpuProfileDir !== undefined ? 30_000 : redis !== undefined ? 15_000 : 3000
        return runningBroker(this.name, started, launched.tail, tmp, { mqtt, http }, credentials, graceMs, redis === undefined ? undefined : { workerPids, redis })
      } catch (err) {
        child?.kill('SIGKILL')
        await redis?.stop()
        rmSync(tmp, { recursive: true, force: true })
        throw err
      }
    },
  }
}

const aedesBare: BrokerDefinition = {
  name: 'aedes',
  label: 'aedes',
  http: false,
  workers: 1,
  redis: false,
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
  workers: 1,
  redis: false,
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
export const brokerRegistry: readonly BrokerDefinition[] = [
  heraldDefinition('jwt'), heraldDefinition('anonymous'), heraldDefinition('bare'), heraldDefinition('cluster'), heraldDefinition('cluster-1'), aedesBare, mosquitto,
]
export const defaultBrokers = ['herald', 'herald-bare', 'aedes', 'mosquitto']
/** What --cluster adds to the brokers: cluster mode beside the single node it is compared with. */
export const clusterBrokers = ['herald-cluster', 'herald-cluster-1']
