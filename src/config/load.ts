import { createPrivateKey } from 'node:crypto'
import { readFileSync, existsSync } from 'node:fs'
import Value from 'typebox/value'
import { checkFiles } from './check-files.js'
import { schemaProblems } from './schema-errors.js'
import { ConfigSchema, type HeraldConfig } from './schema.js'

/** Thrown with every problem found, each prefixed by the config key it concerns. */
export class ConfigError extends Error {
  readonly problems: readonly string[]

  constructor (problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

type Json = Record<string, unknown>

/** Environment variables and the config key each one sets. */
const envKeys: Record<string, { path: string[], type: 'string' | 'integer' | 'workers' }> = {
  HERALD_DATA_DIR: { path: ['dataDir'], type: 'string' },
  HERALD_STORAGE_ENGINE: { path: ['storage', 'engine'], type: 'string' },
  HERALD_STORAGE_ACK_WAIT_MS: { path: ['storage', 'ackWaitMs'], type: 'integer' },
  HERALD_STORAGE_FSYNC: { path: ['storage', 'fsync'], type: 'string' },
  HERALD_CLUSTER_REDIS_URL: { path: ['cluster', 'redis', 'url'], type: 'string' },
  HERALD_CLUSTER_KEY_PREFIX: { path: ['cluster', 'keyPrefix'], type: 'string' },
  HERALD_CLUSTER_WORKERS: { path: ['cluster', 'workers'], type: 'workers' },
  HERALD_CLUSTER_NODE_ID: { path: ['cluster', 'nodeId'], type: 'string' },
  HERALD_CLUSTER_NODE_TIMEOUT_MS: { path: ['cluster', 'nodeTimeoutMs'], type: 'integer' },
  HERALD_CLUSTER_REQUEST_TIMEOUT_MS: { path: ['cluster', 'requestTimeoutMs'], type: 'integer' },
  HERALD_LOG_LEVEL: { path: ['log', 'level'], type: 'string' },
  HERALD_LOG_FORMAT: { path: ['log', 'format'], type: 'string' },
  HERALD_LISTEN_HOST: { path: ['listen', 'host'], type: 'string' },
  HERALD_MQTT_PORT: { path: ['mqtt', 'port'], type: 'integer' },
  HERALD_MQTT_DENIED_PUBLISH: { path: ['mqtt', 'deniedPublish'], type: 'string' },
  HERALD_HTTP_PORT: { path: ['http', 'port'], type: 'integer' },
}

export interface LoadOptions {
  /** Config file path; defaults to `$HERALD_CONFIG`. */
  file?: string | undefined
  env?: NodeJS.ProcessEnv
  /** Applied last; what tests use to configure a broker. */
  overrides?: Json
}

export function loadConfig (options: LoadOptions = {}): HeraldConfig {
  const env = options.env ?? process.env
  const file = options.file ?? env.HERALD_CONFIG
  const problems: string[] = []

  let raw: Json = {}
  if (file !== undefined && file !== '') raw = readConfigFile(file, problems)
  applyEnv(raw, env, problems)
  if (options.overrides) raw = deepMerge(raw, options.overrides)
  if (problems.length > 0) throw new ConfigError(problems)
  // under systemd (StateDirectory=herald) the service's state directory is the data directory unless one is configured
  const stateDirectory = env.STATE_DIRECTORY?.split(':')[0]
  if (raw.dataDir === undefined && stateDirectory !== undefined && stateDirectory !== '') raw.dataDir = stateDirectory

  const config = Value.Default(ConfigSchema, structuredClone(raw)) as unknown
  for (const error of schemaProblems(ConfigSchema, config)) {
    // additionalProperties errors repeat as "schema is false" on the key itself; keep one line per key
    if (error.keyword === 'boolean') continue
    if (error.keyword === 'additionalProperties') {
      const extra = (error.params as { additionalProperties?: string[] }).additionalProperties ?? []
      for (const key of extra) problems.push(`${keyPath(error.instancePath, key)}: unknown key`)
      continue
    }
    problems.push(`${keyPath(error.instancePath)}: ${error.message}`)
  }
  if (problems.length === 0) checkSemantics(config as HeraldConfig, problems)
  if (problems.length > 0) throw new ConfigError(unique(problems))
  return deepFreeze(config as HeraldConfig)
}

function readConfigFile (file: string, problems: string[]): Json {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    problems.push(`${file}: cannot read config file`)
    return {}
  }
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      problems.push(`${file}: the config file must hold a JSON object`)
      return {}
    }
    return parsed as Json
  } catch (err) {
    problems.push(`${file}: not valid JSON (${(err as Error).message})`)
    return {}
  }
}

function applyEnv (raw: Json, env: NodeJS.ProcessEnv, problems: string[]): void {
  for (const [name, { path, type }] of Object.entries(envKeys)) {
    const value = env[name]
    if (value === undefined || value === '') continue
    if (type === 'workers' && value === 'auto') {
      setPath(raw, path, value)
    } else if (type === 'integer' || type === 'workers') {
      if (!/^\d+$/.test(value)) {
        problems.push(`${name}: must be a whole number${type === 'workers' ? ' or auto' : ''}`)
        continue
      }
      setPath(raw, path, Number(value))
    } else {
      setPath(raw, path, value)
    }
  }
  // A secret from the environment replaces any configured keys: the usual way to run in a container.
  const secret = env.HERALD_JWT_SECRET
  if (secret !== undefined && secret !== '') {
    setPath(raw, ['auth', 'jwt', 'keys'], [{ alg: 'HS256', secret }])
  }
}

function checkSemantics (config: HeraldConfig, problems: string[]): void {
  config.auth.jwt.keys.forEach((key, i) => {
    const at = `auth.jwt.keys[${i}]`
    if (key.alg === 'HS256') {
      if ((key.secret === null) === (key.secretFile === null)) problems.push(`${at}: HS256 needs exactly one of secret, secretFile`)
      if (key.secret !== null && Buffer.byteLength(key.secret) < 32) problems.push(`${at}.secret: must be at least 32 bytes`)
      if (key.publicKey !== null || key.publicKeyFile !== null) problems.push(`${at}: HS256 takes no public key`)
    } else {
      if ((key.publicKey === null) === (key.publicKeyFile === null)) problems.push(`${at}: ${key.alg} needs exactly one of publicKey, publicKeyFile`)
      if (key.secret !== null || key.secretFile !== null) problems.push(`${at}: ${key.alg} takes no secret`)
    }
    for (const field of ['secretFile', 'publicKeyFile', 'privateKeyFile'] as const) {
      const path = key[field]
      if (path !== null && !existsSync(path)) problems.push(`${at}.${field}: file not found`)
    }
  })
  const kids = config.auth.jwt.keys.map((k) => k.kid).filter((k) => k !== null)
  if (new Set(kids).size !== kids.length) problems.push('auth.jwt.keys: two keys share a kid')
  if (config.auth.jwt.keys.length > 1 && kids.length !== config.auth.jwt.keys.length) {
    problems.push('auth.jwt.keys: with several keys, each needs a kid')
  }

  checkPush(config.push, problems)
  checkCluster(config.cluster, problems)
  checkPorts(config, problems)

  // Node's HTTP server refuses a headers timeout longer than the request timeout
  if (config.http.headersTimeoutMs > config.http.requestTimeoutMs) problems.push('http.headersTimeoutMs: must not exceed http.requestTimeoutMs')

  const { certFile, keyFile } = config.tls
  if ((certFile === null) !== (keyFile === null)) problems.push('tls: certFile and keyFile go together')
  if (certFile !== null && !existsSync(certFile)) problems.push('tls.certFile: file not found')
  if (keyFile !== null && !existsSync(keyFile)) problems.push('tls.keyFile: file not found')
  // PEM keys and certificates parse as the broker will need them (ACL filters: src/cli/checked-config.ts)
  checkFiles(config, problems)
}

/** Two listeners on one port: the second would fail at start with EADDRINUSE. */
function checkPorts (config: HeraldConfig, problems: string[]): void {
  const ports: Array<[string, number]> = [['mqtt.port', config.mqtt.port], ['http.port', config.http.port]]
  if (config.tls.certFile !== null) ports.push(['tls.mqttPort', config.tls.mqttPort], ['tls.httpsPort', config.tls.httpsPort])
  const seen = new Map<number, string>()
  for (const [key, port] of ports) {
    const other = seen.get(port)
    // 0 picks a free port for each
    if (port !== 0 && other !== undefined) problems.push(`${key}: port ${port} is already ${other}`)
    seen.set(port, key)
  }
}

function checkCluster (cluster: HeraldConfig['cluster'], problems: string[]): void {
  const { url } = cluster.redis
  if (url !== null && !/^rediss?:\/\//.test(url)) problems.push('cluster.redis.url: must start with redis:// or rediss://')
  if (url === null && cluster.workers !== 1) problems.push('cluster.workers: more than one worker shares state through Redis: set cluster.redis.url')
}

function checkPush (push: HeraldConfig['push'], problems: string[]): void {
  if (push.retryMaxMs < push.retryBaseMs) problems.push('push.retryMaxMs: must be at least push.retryBaseMs')
  if (push.fcm !== undefined) {
    const { serviceAccountFile, projectId, caFile } = push.fcm
    const account = readJsonFile(serviceAccountFile)
    if (account === undefined) problems.push('push.fcm.serviceAccountFile: file not found or not JSON')
    else {
      for (const field of ['client_email', 'private_key']) {
        if (typeof account[field] !== 'string') problems.push(`push.fcm.serviceAccountFile: not a service account (no ${field})`)
      }
      if (projectId === null && typeof account.project_id !== 'string') problems.push('push.fcm.projectId: needed, the service account has no project_id')
    }
    if (caFile !== null && !existsSync(caFile)) problems.push('push.fcm.caFile: file not found')
  }
  if (push.apns !== undefined) {
    const { keyFile, caFile } = push.apns
    if (!existsSync(keyFile)) problems.push('push.apns.keyFile: file not found')
    else if (!isEcPrivateKey(keyFile)) problems.push('push.apns.keyFile: not an APNs auth key (.p8: EC private key in PEM)')
    if (caFile !== null && !existsSync(caFile)) problems.push('push.apns.caFile: file not found')
  }
}

function readJsonFile (path: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'))
    return isPlainObject(parsed) ? parsed : undefined
  } catch {
    return undefined
  }
}

function isEcPrivateKey (path: string): boolean {
  try {
    return createPrivateKey(readFileSync(path)).asymmetricKeyType === 'ec'
  } catch {
    return false
  }
}

function keyPath (instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').filter(Boolean)
  if (extra !== undefined) parts.push(extra)
  return parts.reduce((acc, part) => /^\d+$/.test(part) ? `${acc}[${part}]` : acc === '' ? part : `${acc}.${part}`, '') || '(root)'
}

function setPath (target: Json, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {}
    node = node[key] as Json
  }
  node[path[path.length - 1] as string] = value
}

function deepMerge (base: Json, extra: Json): Json {
  const out: Json = { ...base }
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key]
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value
  }
  return out
}

function isPlainObject (value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

function unique (items: string[]): string[] {
  return [...new Set(items)]
}
