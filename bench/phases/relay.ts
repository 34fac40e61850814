import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import jwt from 'jsonwebtoken'
import { startFakeApns, type FakeApns } from '../../test/fakes/apns-server.js'
import { GOOGLE_TOKEN_URL, startFakeFcm, type FakeFcm } from '../../test/fakes/fcm-server.js'
import { repoRoot } from '../lib/paths.js'
import { CpuMeter, type CpuShare } from '../lib/proc.js'
import { Samples } from '../lib/stats.js'
import { waitUntil } from './common.js'
import type { Phase, PhaseContext } from './types.js'

/** Pushes sent in the first second are warm-up (HTTP/2 and TLS sessions, provider tokens, JIT): not measured. */
const WARMUP_MS = 1000
/** Concurrent `POST /v1/push` requests at most (each fans out to every installation of its part). */
const PUSHERS = 4
const APNS_TOPIC = 'com.example.herald.bench'
const APNS_KEY_ID = 'BENCHKEY01'
const APNS_TEAM_ID = 'BENCHTEAM1'
const FCM_PROJECT = 'herald-bench'
const FCM_CLIENT_EMAIL = 'herald-bench@herald-bench.iam.gserviceaccount.com'
const TLS_DIR = join(repoRoot, 'test', 'fixtures', 'tls')
const CA_FILE = join(TLS_DIR, 'cert.pem')

type Provider = 'apns' | 'fcm'

/** One notification as a fake provider answered it: the device token, the push's sequence number, accepted (200) or not. */
type Receipt = (token: string, seq: number, accepted: boolean) => void

/**
 * The fake providers of the phase run now. `prepare()` starts them before
 * Herald (whose config must name their ports) and `run()` needs them to count
 * what arrives; phases run one at a time, so one module-level slot is enough.
 */
interface Fakes {
  readonly apns: FakeApns
  readonly fcm: FakeFcm | undefined
  /** where the fakes report each notification; the part running sets it */
  receipt: Record<Provider, Receipt>
}
let fakes: Fakes | undefined

const ignore: Receipt = () => {}

/** The push's sequence number, sent in its data (`seq`): APNs puts data keys next to `aps`, FCM in `message.data`. */
function seqOf (data: unknown): number {
  const seq = (data as Record<string, unknown> | null | undefined)?.['seq']
  return typeof seq === 'string' ? Number(seq) : -1
}

/**
 * `POST /v1/push` to an app topic that `relayInstallations` push-only APNs
 * installations (then `relayFcmInstallations` FCM ones) are subscribed to:
 * each push is one relay job per installation, sent by Herald's real
 * @parse/node-apn (HTTP/2 + TLS) and firebase-admin (HTTP/1.1 through its
 * agent) to local fakes in this process. Measured at the fakes:
 * notifications accepted per second over a steady window after a warm-up,
 * push request → provider receipt latency, lost and duplicated
 * notifications; from Herald's /metrics: the provider latency histogram
 * (`herald_relay_provider_latency_seconds`, the sender's call as the relay
 * worker times it). The pusher stays at most `relayBacklog` notifications
 * ahead of the fake, so the outbox does not grow without bound.
 */
export const relay: Phase = {
  name: 'relay',
  title: 'Push relay → fake APNs/FCM',
  defaultOn: true,
  metrics: [
    { key: 'apnsPerSec', label: 'APNs notifications/s', unit: '/s', better: 'higher', digits: 0, headline: true },
    { key: 'apnsE2eP50Ms', label: 'APNs push → receipt p50', unit: 'ms', better: 'lower', digits: 1 },
    { key: 'apnsE2eP99Ms', label: 'APNs push → receipt p99', unit: 'ms', better: 'lower', digits: 1, headline: true },
    { key: 'apnsProviderP50Ms', label: 'APNs provider latency p50 (Herald histogram)', unit: 'ms', better: 'lower', digits: 1 },
    { key: 'apnsProviderP99Ms', label: 'APNs provider latency p99 (Herald histogram)', unit: 'ms', better: 'lower', digits: 1, headline: true },
    { key: 'apnsLost', label: 'APNs lost', unit: '', better: 'lower', digits: 0, headline: true },
    { key: 'apnsDuplicated', label: 'APNs duplicated', unit: '', better: 'lower', digits: 0 },
    { key: 'fcmPerSec', label: 'FCM notifications/s', unit: '/s', better: 'higher', digits: 0, headline: true },
    { key: 'fcmE2eP99Ms', label: 'FCM push → receipt p99', unit: 'ms', better: 'lower', digits: 1 },
    { key: 'fcmProviderP99Ms', label: 'FCM provider latency p99 (Herald histogram)', unit: 'ms', better: 'lower', digits: 1 },
    { key: 'fcmLost', label: 'FCM lost', unit: '', better: 'lower', digits: 0, headline: true },
    { key: 'fcmDuplicated', label: 'FCM duplicated', unit: '', better: 'lower', digits: 0 },
  ],
  // its provider latency comes from /metrics, which one worker of a cluster answers for itself only
  applies: (broker) => broker.http && broker.workers === 1,

  async prepare (options) {
    const dir = await mkdtemp(join(tmpdir(), 'herald-bench-relay-'))
    const started: Array<{ close (): Promise<void> }> = []
    const cleanup = async (): Promise<void> => {
      fakes = undefined
      await Promise.all(started.map(async (server) => await server.close()))
      await rm(dir, { recursive: true, force: true })
    }
    try {
      const receipt: Record<Provider, Receipt> = { apns: ignore, fcm: ignore }
      const tls = { certFile: CA_FILE, keyFile: join(TLS_DIR, 'key.pem') }

      const apnsKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      const apnsKeyFile = join(dir, `AuthKey_${APNS_KEY_ID}.p8`)
      await writeFile(apnsKeyFile, apnsKey.privateKey.export({ type: 'pkcs8', format: 'pem' }))
      const apns = await startFakeApns({
        publicKey: apnsKey.publicKey,
        keyId: APNS_KEY_ID,
        teamId: APNS_TEAM_ID,
        topics: [APNS_TOPIC],
        ...tls,
        // node-apn signs one provider token and reuses it (as APNs expects): verify it once, not per request
        cacheProviderTokens: true,
        recordRequests: false,
        onRequest: (r) => receipt.apns(r.token, seqOf(r.json), r.status === 200),
      })
      started.push(apns)
      const push: Record<string, unknown> = {
        // localhost, not 127.0.0.1: a TLS server name cannot be an IP address
        apns: { keyFile: apnsKeyFile, keyId: APNS_KEY_ID, teamId: APNS_TEAM_ID, topic: APNS_TOPIC, host: 'localhost', port: apns.port, caFile: CA_FILE },
      }

      let fcm: FakeFcm | undefined
      if (options.relayFcmInstallations > 0) {
        const fcmKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
        const serviceAccountFile = join(dir, 'service-account.json')
        await writeFile(serviceAccountFile, JSON.stringify({
          type: 'service_account',
          project_id: FCM_PROJECT,
          private_key_id: randomBytes(20).toString('hex'),
          private_key: fcmKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
          client_email: FCM_CLIENT_EMAIL,
          client_id: '100000000000000000002',
          token_uri: GOOGLE_TOKEN_URL,
        }))
        fcm = await startFakeFcm({
          projectId: FCM_PROJECT,
          clientEmail: FCM_CLIENT_EMAIL,
          publicKey: fcmKey.publicKey,
          ...tls,
          recordMessages: false,
          onMessage: (m) => receipt.fcm(m.token, seqOf(m.message['data']), m.status === 200),
        })
        started.push(fcm)
        push['fcm'] = { serviceAccountFile, endpoint: fcm.url, caFile: CA_FILE }
      }
      fakes = { apns, fcm, receipt }
      // retry settings stay Herald's defaults: nothing should need a retry here, and any retry shows as lost or late
      return { heraldConfig: { push }, cleanup }
    } catch (err) {
      await cleanup()
      throw err
    }
  },

  async run (ctx) {
    const rig = fakes
    if (rig === undefined) throw new Error('relay: prepare() did not run')
    const port = ctx.broker.httpPort
    if (port === undefined) throw new Error('no HTTP port')
    const o = ctx.options
    const agent = new Agent({ keepAlive: true, maxSockets: 32 })
    const api = new Api(ctx.broker.host, port, agent)
    const service = ctx.tokens.service()
    // an admin creates the app topics; the service token pushes and registers devices on behalf of their users
    const admin = jwt.sign({ sub: 'bench-admin', role: 'admin' }, ctx.tokens.secret, { algorithm: 'HS256', expiresIn: '2h' })
    const notes: string[] = []
    const metrics: Record<string, number | null> = {}
    let cpu: CpuShare | undefined
    try {
      for (const provider of ['apns', 'fcm'] as const) {
        const n = provider === 'apns' ? o.relayInstallations : o.relayFcmInstallations
        if (n <= 0 || (provider === 'fcm' && rig.fcm === undefined)) continue
        const part = await runPart(ctx, api, rig, provider, n, { admin, service })
        Object.assign(metrics, part.metrics)
        notes.push(...part.notes)
        // the headline CPU shares are those of the APNs window (FCM's are in the metrics)
        cpu ??= part.cpu
        metrics[`${provider}BrokerCpu`] = part.cpu.broker
        metrics[`${provider}GeneratorCpu`] = part.cpu.generator
      }
    } finally {
      rig.receipt.apns = ignore
      rig.receipt.fcm = ignore
      agent.destroy()
    }
    if (cpu === undefined) throw new Error('relay: --relay-installations and --relay-fcm-installations are both 0')
    return { metrics, cpu, notes }
  },
}

interface PartResult {
  readonly metrics: Record<string, number | null>
  readonly cpu: CpuShare
  readonly notes: string[]
}

/** Registers `n` push-only installations of `provider` on one app topic, then pushes to it for the measured window. */
async function runPart (ctx: PhaseContext, api: Api, rig: Fakes, provider: Provider, n: number, tokens: { admin: string, service: string }): Promise<PartResult> {
  const o = ctx.options
  const name = `${ctx.tag}-${provider}`
  const topic = `app/${name}`
  await api.expect(201, 'PUT', `/v1/topics/${name}`, tokens.admin, {})

  // setup: one user per device, as real devices are; the service registers each and subscribes it
  const index = new Map<string, number>()
  let next = 0
  const register = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      const token = provider === 'apns' ? randomBytes(32).toString('hex') : `fcm-bench-${i}-${randomBytes(24).toString('base64url')}`
      index.set(token, i)
      const created = await api.expect(201, 'POST', '/v1/installations', tokens.service, {
        user: `bench-relay-${i}`,
        mqtt: false,
        pushToken: { provider, token, environment: 'production' },
      })
      const id = (JSON.parse(created) as { installationId: string }).installationId
      await api.expect(200, 'PUT', `/v1/installations/${id}/subscriptions/${topic}`, tokens.service)
    }
  }
  const setupStart = performance.now()
  await Promise.all(Array.from({ length: 16 }, register))
  ctx.log(`relay: ${n} ${provider} installations registered in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`)

  // per push: when it was sent, and which installations got it
  const sentAt: number[] = []
  const got: Array<Uint8Array | undefined> = []
  let pushes = 0
  let accepted = 0
  let refusedPushes = 0
  let received = 0
  let duplicated = 0
  let rejected = 0
  let unknown = 0
  /** the first push whose notifications count for latency (sent after the warm-up) */
  let firstMeasured = Infinity
  const e2e = new Samples()
  const requestLatency = new Samples()
  /** pushers waiting for the fake to catch up */
  let waiting: Array<() => void> = []

  rig.receipt[provider] = (token, seq, ok) => {
    if (!ok) { rejected++; return }
    const i = index.get(token)
    const bits = got[seq]
    if (i === undefined || bits === undefined) { unknown++; return }
    if (bits[i] === 1) { duplicated++; return }
    bits[i] = 1
    received++
    if (seq >= firstMeasured) e2e.add(performance.now() - (sentAt[seq] as number))
    if (waiting.length > 0) {
      const wake = waiting
      waiting = []
      for (const resolve of wake) resolve()
    }
  }
  /** notifications of pushes sent (or being sent) that the fake has not received yet */
  const outstanding = (): number => (pushes - refusedPushes) * n - received

  const t0 = performance.now()
  const warm = t0 + WARMUP_MS
  const deadline = warm + o.relaySeconds * 1000
  const body = (seq: number): string => JSON.stringify({
    to: { topic },
    notification: { title: 'Herald bench', body: `push ${seq}` },
    data: { seq: String(seq) },
  })
  const pusher = async (): Promise<void> => {
    while (performance.now() < deadline) {
      if (outstanding() > 0 && outstanding() + n > o.relayBacklog) {
        // wait for the fake to catch up (or for the clock: the deadline must end the loop)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 20)
          waiting.push(() => { clearTimeout(timer); resolve() })
        })
        continue
      }
      const seq = pushes++
      const start = performance.now()
      sentAt[seq] = start
      got[seq] = new Uint8Array(n)
      if (start >= warm && firstMeasured === Infinity) firstMeasured = seq
      const status = await api.call('POST', '/v1/push', tokens.service, body(seq)).then((r) => r.status, () => 0)
      if (status === 202) {
        accepted++
        requestLatency.add(performance.now() - start)
      } else {
        refusedPushes++
        got[seq] = undefined
      }
    }
  }

  const running = Promise.all(Array.from({ length: PUSHERS }, pusher))
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, warm - performance.now())))
  const scrape0 = await api.scrape()
  const receivedAtWarm = received
  const acceptedAtWarm = accepted
  const tWarm = performance.now()
  const meter = new CpuMeter(ctx.broker)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - performance.now())))
  const receivedAtEnd = received
  const acceptedAtEnd = accepted
  const tEnd = performance.now()
  const cpu = meter.stop()
  const scrape1 = await api.scrape()
  await running

  const expected = accepted * n
  const complete = await waitUntil(() => received >= expected, () => received, 3000, 60_000)
  rig.receipt[provider] = ignore
  const seconds = (tEnd - tWarm) / 1000
  const latency = providerLatency(scrape0, scrape1, provider)
  const d = e2e.summary()
  const r = requestLatency.summary()
  const notes: string[] = []
  if (!complete) notes.push(`${provider}: ${expected - received} of ${expected} notifications of accepted pushes never reached the fake`)
  if (refusedPushes > 0) notes.push(`${provider}: ${refusedPushes} pushes not accepted`)
  if (rejected > 0) notes.push(`${provider}: the fake refused ${rejected} requests`)
  if (unknown > 0) notes.push(`${provider}: ${unknown} notifications the bench did not send`)
  // the provider's series, whatever other labels it carries (a node on Redis adds node="…")
  const counter = (scrape: Scrape, metric: string): number => {
    let sum = 0
    for (const [key, value] of scrape) if (key.startsWith(`${metric}{`) && key.includes(`provider="${provider}"`)) sum += value
    return sum
  }
  const retried = counter(scrape1, 'herald_relay_retried_total') - counter(scrape0, 'herald_relay_retried_total')
  if (retried > 0) notes.push(`${provider}: Herald retried ${retried} sends in the window`)
  const metrics = {
    [`${provider}Installations`]: n,
    [`${provider}PerSec`]: (receivedAtEnd - receivedAtWarm) / seconds,
    [`${provider}SentPerSecHerald`]: (counter(scrape1, 'herald_relay_sent_total') - counter(scrape0, 'herald_relay_sent_total')) / ((scrape1.at - scrape0.at) / 1000),
    [`${provider}PushesPerSec`]: (acceptedAtEnd - acceptedAtWarm) / seconds,
    [`${provider}PushRequestP99Ms`]: r?.p99 ?? null,
    [`${provider}E2eP50Ms`]: d?.p50 ?? null,
    [`${provider}E2eP99Ms`]: d?.p99 ?? null,
    [`${provider}ProviderP50Ms`]: latency.p50,
    [`${provider}ProviderP99Ms`]: latency.p99,
    [`${provider}Retried`]: retried,
    [`${provider}Lost`]: expected - received,
    [`${provider}Duplicated`]: duplicated,
  }
  ctx.log(`relay ${provider}: ${Object.entries(metrics).map(([k, v]) => `${k.slice(provider.length)} ${v === null ? '–' : Math.round(v * 10) / 10}`).join(', ')} · cpu broker ${cpu.broker.toFixed(2)} gen ${cpu.generator.toFixed(2)} other ${cpu.other.toFixed(2)}`)
  return { cpu, notes, metrics }
}

/** Prometheus text: `name{labels}` → value, plus when it was read. */
type Scrape = Map<string, number> & { at: number }

/** p50/p99 in ms of one provider's `herald_relay_provider_latency_seconds` between two scrapes, interpolated within buckets. */
function providerLatency (before: Scrape, after: Scrape, provider: Provider): { p50: number | null, p99: number | null } {
  const buckets: Array<{ le: number, count: number }> = []
  const pattern = new RegExp(`^herald_relay_provider_latency_seconds_bucket\\{(?=.*provider="${provider}")(?=.*le="([^"]+)").*\\}$`)
  for (const [key, value] of after) {
    const le = pattern.exec(key)?.[1]
    if (le === undefined) continue
    buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: value - (before.get(key) ?? 0) })
  }
  buckets.sort((a, b) => a.le - b.le)
  const total = buckets[buckets.length - 1]?.count ?? 0
  const quantile = (q: number): number | null => {
    if (total === 0) return null
    const rank = q * total
    let lower = 0
    let below = 0
    for (const { le, count } of buckets) {
      if (count >= rank) {
        // above the largest bound the histogram only says "more than that"
        if (le === Infinity) return lower * 1000
        return (lower + (le - lower) * (count === below ? 1 : (rank - below) / (count - below))) * 1000
      }
      lower = le
      below = count
    }
    return null
  }
  return { p50: quantile(0.5), p99: quantile(0.99) }
}

/** Herald's HTTP API over node:http keep-alive connections. */
class Api {
  constructor (readonly host: string, readonly port: number, readonly agent: Agent) {}

  async call (method: string, path: string, token: string | null, body?: string): Promise<{ status: number, text: string }> {
    return await new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = {}
      if (token !== null) headers['authorization'] = `Bearer ${token}`
      if (body !== undefined) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = Buffer.byteLength(body)
      }
      const req = request({ host: this.host, port: this.port, method, path, agent: this.agent, headers, timeout: 30_000 }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.once('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
        res.once('error', reject)
      })
      req.once('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)))
      req.once('error', reject)
      req.end(body)
    })
  }

  /** The response body; throws unless the status is `status`. */
  async expect (status: number, method: string, path: string, token: string | null, body?: unknown): Promise<string> {
    const r = await this.call(method, path, token, body === undefined ? undefined : JSON.stringify(body))
    if (r.status !== status) throw new Error(`${method} ${path}: ${r.status} ${r.text.slice(0, 300)}`)
    return r.text
  }

  async scrape (): Promise<Scrape> {
    const text = await this.expect(200, 'GET', '/metrics', null)
    const at = performance.now()
    const values = new Map<string, number>()
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue
      const space = line.lastIndexOf(' ')
      values.set(line.slice(0, space), Number(line.slice(space + 1)))
    }
    return Object.assign(values, { at })
  }
}
