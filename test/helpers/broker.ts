import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { Client } from 'aedes'
import jwt from 'jsonwebtoken'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient, type OnMessageCallback } from 'mqtt'
import { pino } from 'pino'
import { loadConfig, type HeraldConfig } from '../../src/config/index.js'
import { buildServer, type HeraldServer, type ListeningPorts, type ServerOptions } from '../../src/server.js'

/** The HS256 secret every test broker trusts (kid `test`) unless a test configures other keys. */
export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long'

/** The subset of tap's Test that helpers need, so they work with any tap version. */
export interface Teardown { teardown (fn: () => unknown): void }

export interface TestBroker {
  readonly server: HeraldServer
  readonly config: HeraldConfig
  readonly ports: ListeningPorts
  readonly dataDir: string
  readonly mqttUrl: string
  readonly wsUrl: string
  /** Every log line the broker wrote, parsed (only when started with `captureLogs`). */
  readonly logs: Array<Record<string, unknown>>
  /** Raw log text, to check that no secret ever appears in it. */
  logText (): string
  stop (): Promise<void>
}

export interface StartOptions {
  /** Deep-merged over the test defaults (free ports on 127.0.0.1, temp data dir, silent logs). */
  overrides?: Record<string, unknown>
  /** Reuse a data directory (restart tests); otherwise a fresh temp dir removed at teardown. */
  dataDir?: string
  captureLogs?: boolean
  /** Called with each log line as it is written (with `captureLogs`): a test waits on a line instead of polling `logs`. */
  onLog?: (line: Record<string, unknown>) => void
  /** Passed to buildServer (the logger is the helper's). */
  serverOptions?: Omit<ServerOptions, 'logger'>
}

export async function makeTempDir (t: Teardown, prefix = 'herald-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  return dir
}

export async function startBroker (t: Teardown, options: StartOptions = {}): Promise<TestBroker> {
  const dataDir = options.dataDir ?? await makeTempDir(t)
  const base = {
    dataDir,
    listen: { host: '127.0.0.1' },
    mqtt: { port: 0 },
    http: { port: 0 },
    log: { level: options.captureLogs === true ? 'debug' : 'silent' },
    auth: { jwt: { keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] } },
    // every test client comes from 127.0.0.1; tests of the rate limit set their own
    limits: { connectRatePerIp: { points: 100000, windowSec: 1 } },
  }
  const config = loadConfig({ env: {}, overrides: merge(base, options.overrides ?? {}) })

  const chunks: string[] = []
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _enc, done) {
      const text = chunk.toString('utf8')
      chunks.push(text)
      for (const raw of text.split('\n').filter(Boolean)) {
        const line = JSON.parse(raw) as Record<string, unknown>
        logs.push(line)
        options.onLog?.(line)
      }
      done()
    },
  })
  const logger = pino({ level: config.log.level }, sink)
  const server = buildServer(config, { ...options.serverOptions, logger })
  const ports = await server.start()
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await server.stop()
  }
  t.teardown(stop)
  return {
    server,
    config,
    ports,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`,
    wsUrl: `ws://127.0.0.1:${ports.http}${config.http.wsPath}`,
    logs,
    logText: () => chunks.join(''),
    stop,
  }
}

export interface TokenOptions {
  secret?: jwt.Secret
  algorithm?: jwt.Algorithm
  kid?: string | null
  /** Default `1h` (what `herald token` mints), unless the claims carry `exp`; null: no `exp` at all. */
  expiresIn?: jwt.SignOptions['expiresIn'] | null
  notBefore?: jwt.SignOptions['notBefore']
  issuer?: string
  audience?: string
}

/** Signs claims with the test secret (or the given key). */
export function sign (claims: Record<string, unknown>, options: TokenOptions = {}): string {
  const signOptions: jwt.SignOptions = { algorithm: options.algorithm ?? 'HS256' }
  const kid = options.kid === undefined ? 'test' : options.kid
  if (kid !== null) signOptions.keyid = kid
  // auth.jwt.requireExp is on by default: test tokens expire like real ones
  const expiresIn = options.expiresIn === undefined && claims.exp === undefined ? '1h' : options.expiresIn
  if (expiresIn !== undefined && expiresIn !== null) signOptions.expiresIn = expiresIn
  if (options.notBefore !== undefined) signOptions.notBefore = options.notBefore
  if (options.issuer !== undefined) signOptions.issuer = options.issuer
  if (options.audience !== undefined) signOptions.audience = options.audience
  return jwt.sign(claims, options.secret ?? TEST_SECRET, signOptions)
}

/**
 * Connects an mqtt.js client that never reconnects by itself; ended at teardown.
 * `onMessage` is attached before CONNECT, so messages queued in a persistent
 * session (sent right after CONNACK) cannot be missed.
 */
export async function connect (t: Teardown, url: string, options: IClientOptions = {}, onMessage?: OnMessageCallback): Promise<MqttClient> {
  const client = await open(url, options, onMessage)
  t.teardown(async () => { await client.endAsync(true) })
  return client
}

const connacks = new WeakMap<MqttClient, IConnackPacket>()

/** The CONNACK a client got from `connect` (e.g. to check `sessionPresent`). */
export function connackOf (client: MqttClient): IConnackPacket {
  const connack = connacks.get(client)
  if (connack === undefined) throw new Error('client was not opened by the test helpers')
  return connack
}

/** Tries to connect and resolves the CONNACK return code of the refusal (0 if it was accepted). */
export async function connackCode (url: string, options: IClientOptions = {}): Promise<number> {
  try {
    const client = await open(url, options)
    await client.endAsync(true)
    return 0
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'number') return code
    throw err
  }
}

/**
 * mqtt.connectAsync waits forever when the connection closes before CONNACK;
 * this rejects instead. [MQTT-3.1.2-22] a password needs a username, so one is
 * filled in when a test gives only the token.
 */
async function open (url: string, options: IClientOptions, onMessage?: OnMessageCallback): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
    ...(options.password !== undefined && { username: 'device' }),
    ...options,
  })
  if (onMessage !== undefined) client.on('message', onMessage)
  return await new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      cleanup()
      client.end(true)
      reject(err)
    }
    const onClose = (): void => fail(new Error('connection closed before CONNACK'))
    const onConnect = (connack: IConnackPacket): void => {
      connacks.set(client, connack)
      cleanup()
      resolve(client)
    }
    const cleanup = (): void => {
      client.off('error', fail)
      client.off('close', onClose)
      client.off('connect', onConnect)
    }
    client.once('connect', onConnect)
    client.once('error', fail)
    client.once('close', onClose)
  })
}

/** Resolves with the next message on `client` whose topic is `topic` (any topic when omitted). */
export async function nextMessage (client: MqttClient, topic?: string): Promise<{ topic: string, payload: Buffer }> {
  return await new Promise((resolve) => {
    const onMessage = (received: string, payload: Buffer): void => {
      if (topic !== undefined && received !== topic) return
      client.off('message', onMessage)
      resolve({ topic: received, payload })
    }
    client.on('message', onMessage)
  })
}

/**
 * Resolves on the first aedes `event` about the client `clientId`: 'clientReady'
 * once aedes has also sent a restored session's queue, 'ack' once a PUBACK is
 * processed, …
 */
export async function brokerEvent (broker: TestBroker, event: 'clientReady' | 'clientDisconnect' | 'subscribe' | 'ack', clientId: string): Promise<void> {
  const aedes = broker.server.broker?.aedes as unknown as { on (e: string, f: (...args: unknown[]) => void): void, off (e: string, f: (...args: unknown[]) => void): void } | undefined
  if (aedes === undefined) throw new Error('broker not started')
  await new Promise<void>((resolve) => {
    const listener = (...args: unknown[]): void => {
      // clientReady and clientDisconnect pass the client first; subscribe and ack pass it last
      const client = (event === 'clientReady' || event === 'clientDisconnect' ? args[0] : args[args.length - 1]) as Client
      if (client.id !== clientId) return
      aedes.off(event, listener)
      resolve()
    }
    aedes.on(event, listener)
  })
}

function merge (base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key]
    const bothObjects = isObject(current) && isObject(value)
    out[key] = bothObjects ? merge(current, value) : value
  }
  return out
}

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** A persistent session subscribed to `topic` at QoS 1 whose connection has closed: what is published to it now is queued. */
export async function offlineSession (t: Teardown, broker: TestBroker, clientId: string, password: string, topic: string): Promise<void> {
  const device = await connect(t, broker.mqttUrl, { clientId, clean: false, password })
  await device.subscribeAsync(topic, { qos: 1 })
  const gone = brokerEvent(broker, 'clientDisconnect', clientId)
  await device.endAsync()
  await gone
}
