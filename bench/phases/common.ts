import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LeanClient } from '../lib/lean-client.js'
import type { CpuShare } from '../lib/proc.js'
import type { ClientInit, MetricSpec, PhaseContext } from './types.js'

/**
 * How long a windowed publisher (fan-out, fan-in) waits for any progress
 * before it counts the messages in flight as lost and reopens its window.
 */
export const STALL_MS = 1000

/** A set of sequence numbers seen, with duplicate counting. */
export class SeqSet {
  readonly #bits: Uint8Array
  unique = 0
  duplicates = 0
  /** highest sequence number seen, -1 before the first */
  highest = -1
  /** outside [0, capacity): counted but not tracked */
  outOfRange = 0

  constructor (capacity: number) {
    this.#bits = new Uint8Array(Math.ceil(capacity / 8))
  }

  add (seq: number): void {
    const byte = seq >>> 3
    if (byte >= this.#bits.length) {
      this.outOfRange++
      return
    }
    const mask = 1 << (seq & 7)
    const current = this.#bits[byte] as number
    if ((current & mask) !== 0) {
      this.duplicates++
      return
    }
    this.#bits[byte] = current | mask
    this.unique++
    if (seq > this.highest) this.highest = seq
  }
}

/** Connects and subscribes a set of clients, `concurrency` at a time; throws on the first failure. */
export async function connectClients (ctx: PhaseContext, inits: readonly ClientInit[], concurrency: number, subscribe?: { filter: (i: number) => string, qos: 0 | 1 }): Promise<LeanClient[]> {
  const clients: LeanClient[] = new Array<LeanClient>(inits.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < inits.length) {
      const i = next++
      const client = ctx.client(inits[i] as ClientInit)
      const rc = await client.connect()
      if (rc !== 0) throw new Error(`${ctx.broker.name}: CONNACK ${rc} for ${client.options.clientId}`)
      if (subscribe !== undefined) {
        const granted = await client.subscribe(subscribe.filter(i), subscribe.qos)
        if (granted === 0x80) throw new Error(`${ctx.broker.name}: subscription to ${subscribe.filter(i)} refused`)
      }
      clients[i] = client
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, inits.length) }, worker))
  return clients
}

/** Waits until `done()` or until nothing progressed for `idleMs`, at most `maxMs`; resolves whether done. */
export async function waitUntil (done: () => boolean, progress: () => number, idleMs: number, maxMs: number): Promise<boolean> {
  const start = performance.now()
  let last = progress()
  let lastChange = start
  while (!done()) {
    const now = performance.now()
    if (now - start > maxMs) return false
    const p = progress()
    if (p !== last) {
      last = p
      lastChange = now
    } else if (now - lastChange > idleMs) {
      return false
    }
    await sleep(10)
  }
  return true
}

/**
 * The load of a throughput or latency phase runs this long before the phase
 * starts counting (BenchOptions.warmupSeconds): a node broker's first seconds
 * are JIT warm-up (bench/RESULTS.md, "Warm-up").
 */
export async function warmUp (options: { readonly warmupSeconds: number }): Promise<void> {
  if (options.warmupSeconds > 0) await sleep(options.warmupSeconds * 1000)
}

/** A callback run at most once per event-loop turn, however often it is asked for. */
export function coalesced (fn: () => void): () => void {
  let scheduled = false
  const run = (): void => {
    scheduled = false
    fn()
  }
  return () => {
    if (scheduled) return
    scheduled = true
    setImmediate(run)
  }
}

/**
 * Work done per second of broker CPU (all its processes and threads, user and
 * system) over the phase's window: on a machine shared with other work the
 * rate moves with whatever else runs, the work per CPU-second much less, so
 * it is how a change is compared on a busy machine. Null without CPU figures.
 */
export function perBrokerCpuSecond (count: number, cpu: CpuShare): number | null {
  const cpuSeconds = cpu.broker * cpu.seconds
  return cpuSeconds > 0 ? count / cpuSeconds : null
}

/** The Redis figures of a phase on a cluster broker (rows left empty for the others). */
export const REDIS_METRICS: readonly MetricSpec[] = [
  { key: 'redisMsPer1k', label: 'Redis CPU per 1,000 msgs published', unit: 'ms', better: 'lower', digits: 2, headline: true },
  { key: 'redisMsPer1kDelivered', label: 'Redis CPU per 1,000 deliveries', unit: 'ms', better: 'lower', digits: 2 },
  { key: 'redisCores', label: 'Redis CPU', unit: 'cores', better: 'lower', digits: 2 },
]

/**
 * Redis CPU (from /proc/<redis-server pid>/stat over the phase's window) per
 * 1,000 messages: milliseconds of redis-server CPU time for every 1,000
 * messages published (one message to 100 fan-out subscribers counts once),
 * and for every 1,000 deliveries. Null for brokers without a redis-server.
 */
export function redisFigures (cpu: CpuShare, published: number, delivered: number): { redisMsPer1k: number | null, redisMsPer1kDelivered: number | null, redisCores: number | null } {
  if (cpu.redis === null) return { redisMsPer1k: null, redisMsPer1kDelivered: null, redisCores: null }
  const ms = cpu.redis * cpu.seconds * 1000
  return {
    redisMsPer1k: published > 0 ? ms / (published / 1000) : null,
    redisMsPer1kDelivered: delivered > 0 ? ms / (delivered / 1000) : null,
    redisCores: cpu.redis,
  }
}

/** On a broker of several workers, how many of these clients each worker holds (the cluster presence), as a note; none otherwise. */
export async function placementNote (ctx: PhaseContext, what: string, clientIds: readonly string[]): Promise<string[]> {
  if (ctx.broker.workers < 2 || ctx.broker.nodesOf === undefined) return []
  const nodes = await ctx.broker.nodesOf(clientIds)
  const counts = new Map<string, number>()
  for (const node of nodes) counts.set(node ?? 'unknown', (counts.get(node ?? 'unknown') ?? 0) + 1)
  const spread = [...counts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, n]) => n)
  return [`${what} per worker: ${spread.join(' / ')}${counts.has('unknown') ? ` (${counts.get('unknown') ?? 0} not in the presence)` : ''}`]
}
