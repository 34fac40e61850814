import type { Phase } from '../phases/types.js'
import type { CpuShare } from './proc.js'
import { median } from './stats.js'

export interface RunRecord {
  readonly round: number
  /** 1, or more when a noisy attempt was run again */
  readonly attempt: number
  /** the attempt that counts for its round (the quietest) */
  readonly kept: boolean
  readonly phase: string
  readonly broker: string
  readonly ok: boolean
  readonly error?: string
  readonly seconds: number
  readonly metrics: Record<string, number | null>
  readonly cpu: CpuShare | null
  readonly notes: readonly string[]
}

export interface BrokerInfo {
  readonly name: string
  readonly label: string
  readonly version: string
}

export interface CpuSummary {
  readonly broker: number | null
  readonly generator: number | null
  /** a cluster broker's redis-server */
  readonly redis: number | null
  readonly other: number | null
  /** rounds flagged saturated / generator-bound */
  readonly saturated: number
  readonly generatorBound: number
  readonly noisy: number
  readonly rounds: number
}

/** medians[phase][broker][metric] */
export type Medians = Record<string, Record<string, Record<string, number | null>>>

export interface Summary {
  readonly medians: Medians
  readonly cpu: Record<string, Record<string, CpuSummary>>
  readonly failures: Record<string, Record<string, number>>
}

export function summarize (records: readonly RecordLike[]): Summary {
  const medians: Medians = {}
  const cpu: Record<string, Record<string, CpuSummary>> = {}
  const failures: Record<string, Record<string, number>> = {}
  const groups = new Map<string, RecordLike[]>()
  for (const r of records) {
    const key = `${r.phase}\u0000${r.broker}`
    const list = groups.get(key) ?? []
    list.push(r)
    groups.set(key, list)
  }
  for (const [key, list] of groups) {
    const [phase, broker] = key.split('\u0000') as [string, string]
    const ok = list.filter((r) => r.ok)
    const metricKeys = new Set(ok.flatMap((r) => Object.keys(r.metrics)))
    const m: Record<string, number | null> = {}
    for (const k of metricKeys) {
      m[k] = median(ok.map((r) => r.metrics[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)))
    }
    ;(medians[phase] ??= {})[broker] = m
    const shares = ok.map((r) => r.cpu).filter((c): c is CpuShare => c !== null)
    ;(cpu[phase] ??= {})[broker] = {
      broker: median(shares.map((c) => c.broker)),
      generator: median(shares.map((c) => c.generator)),
      redis: median(shares.map((c) => c.redis).filter((v): v is number => typeof v === 'number')),
      other: median(shares.map((c) => c.other)),
      saturated: shares.filter((c) => c.saturated).length,
      generatorBound: shares.filter((c) => c.generatorBound).length,
      noisy: shares.filter((c) => c.noisy).length,
      rounds: shares.length,
    }
    ;(failures[phase] ??= {})[broker] = list.length - ok.length
  }
  return { medians, cpu, failures }
}

type RecordLike = Pick<RunRecord, 'phase' | 'broker' | 'ok' | 'metrics' | 'cpu'>

function fmt (value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function ratio (a: number | null | undefined, b: number | null | undefined): string {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return '–'
  return `${(a / b).toFixed(2)}×`
}

export interface TargetCheck {
  readonly target: string
  readonly measured: string
  /** true met, false missed, null not measured */
  readonly met: boolean | null
}

/** The ratio targets of issue #6, checked against the medians of this run. */
export function checkTargets (summary: Summary, phases: readonly Phase[]): TargetCheck[] {
  const m = summary.medians
  const get = (phase: string, broker: string, key: string): number | null => m[phase]?.[broker]?.[key] ?? null
  const checks: TargetCheck[] = []

  // 1. no figure worse than bare aedes
  const worse: string[] = []
  let compared = 0
  for (const phase of phases) {
    for (const spec of phase.metrics) {
      if (spec.headline !== true || spec.diagnostic === true || spec.better === 'none') continue
      const h = get(phase.name, 'herald', spec.key)
      const a = get(phase.name, 'aedes', spec.key)
      if (h === null || a === null) continue
      compared++
      const isWorse = spec.better === 'higher' ? h < a : h > a
      if (isWorse && !(a === 0 && h === 0)) worse.push(`${phase.name} ${spec.label} ${fmt(h, spec.digits ?? 0)} vs ${fmt(a, spec.digits ?? 0)}`)
    }
  }
  checks.push({
    target: 'no figure worse than bare aedes (defaults)',
    measured: compared === 0 ? 'aedes not run' : worse.length === 0 ? `all ${compared} headline figures at least equal` : `worse: ${worse.join('; ')}`,
    met: compared === 0 ? null : worse.length === 0,
  })

  // 2. the cost of auth + ACL + persistence: Herald against herald-bare (no JWT, everything granted, in-memory store)
  const costs = (baseline: string): Array<{ p: string, cost: number }> => ['connect', 'fanout-qos0', 'fanout-qos1', 'fanin-qos0', 'fanin-qos1'].map((p) => {
    const key = p === 'connect' ? 'connectionsPerSec' : 'deliveredPerSec'
    const h = get(p, 'herald', key)
    const b = get(p, baseline, key)
    return h !== null && b !== null ? { p, cost: 1 - h / b } : null
  }).filter((x): x is { p: string, cost: number } => x !== null)
  const percent = (list: Array<{ p: string, cost: number }>): string => list.map((x) => `${x.p} ${(x.cost * 100).toFixed(0)}%`).join(', ')
  const bare = costs('herald-bare')
  const jwtOnly = costs('herald-anon')
  checks.push({
    target: 'auth + ACL + persistence cost < 10% vs Herald with them off',
    measured: bare.length > 0
      ? `herald vs herald-bare: ${percent(bare)}`
      : jwtOnly.length > 0
        ? `JWT only (herald vs herald-anon): ${percent(jwtOnly)}; run herald-bare for all three`
        : 'not measured (run --brokers herald,herald-bare)',
    met: bare.length > 0 ? bare.every((x) => x.cost < 0.1) : null,
  })

  const half = (phase: string, key: string, label: string): void => {
    const h = get(phase, 'herald', key)
    const q = get(phase, 'mosquitto', key)
    checks.push({
      target: `${label} ≥ 0.5× Mosquitto`,
      measured: h === null || q === null ? 'not measured' : `${fmt(h)} vs ${fmt(q)} = ${(h / q).toFixed(2)}×`,
      met: h === null || q === null ? null : h >= 0.5 * q,
    })
  }
  half('fanout-qos0', 'deliveredPerSec', 'fan-out QoS 0')
  half('fanout-qos1', 'deliveredPerSec', 'fan-out QoS 1')
  half('fanout-qos1-clean', 'deliveredPerSec', 'fan-out QoS 1 to clean sessions')
  half('fanin-qos0', 'deliveredPerSec', 'fan-in (QoS 0)')
  {
    const h = get('latency', 'herald', 'p99Ms')
    const q = get('latency', 'mosquitto', 'p99Ms')
    checks.push({
      target: 'p99 latency ≤ 1.5× Mosquitto',
      measured: h === null || q === null ? 'not measured' : `${fmt(h, 3)} ms vs ${fmt(q, 3)} ms = ${(h / q).toFixed(2)}×`,
      met: h === null || q === null ? null : h <= 1.5 * q,
    })
  }
  half('connect', 'connectionsPerSec', 'connections/s')
  {
    const scaleRss = get('scale', 'herald', 'rssPerConnectionKB')
    const connectRss = get('connect', 'herald', 'rssPerConnectionKB')
    const rss = scaleRss ?? connectRss
    checks.push({
      target: 'RSS per idle connection ≤ 15 kB (aim 5)',
      measured: rss === null ? 'not measured' : `${fmt(rss, 1)} kB (${scaleRss !== null ? 'scale phase' : 'connect storm'})`,
      met: rss === null ? null : rss <= 15,
    })
  }
  {
    // issue #4's relay target, measured by the relay phase against the local fake APNs
    const apns = get('relay', 'herald', 'apnsPerSec')
    const lost = get('relay', 'herald', 'apnsLost')
    checks.push({
      target: 'relay ≥ 5,000 APNs notifications/s (issue #4), none lost',
      measured: apns === null ? 'not measured' : `${fmt(apns)} /s, ${fmt(lost ?? 0)} lost, provider p99 ${fmt(get('relay', 'herald', 'apnsProviderP99Ms'), 1)} ms`,
      met: apns === null ? null : apns >= 5000 && lost === 0,
    })
  }
  {
    const held = get('scale', 'herald', 'held')
    const target = get('scale', 'herald', 'target')
    checks.push({
      target: '50,000 idle connections held by one process',
      measured: held === null ? 'not measured' : `${fmt(held)} of ${fmt(target)} held (K = --scale-connections)`,
      met: held === null ? null : held >= 50_000 ? true : (target !== null && target < 50_000 ? null : false),
    })
  }
  checks.push(...clusterChecks(summary))
  return checks
}

/** The two cluster brokers, compared with the single-node `herald` of the same run. */
const CLUSTERS = [
  { name: 'herald-cluster', label: 'cluster' },
  { name: 'herald-cluster-1', label: 'Redis, 1 node' },
] as const

/**
 * Issue 16's figures for cluster mode, as ratios to the single-node Herald
 * run side by side (never absolute targets): idle connections on N workers
 * and their RSS, fan-out and fan-in across nodes, the latency the bus adds,
 * Redis CPU per 1,000 messages. Only when a cluster broker ran.
 */
export function clusterChecks (summary: Summary): TargetCheck[] {
  const m = summary.medians
  const get = (phase: string, broker: string, key: string): number | null => m[phase]?.[broker]?.[key] ?? null
  const ran = CLUSTERS.filter((c) => Object.values(m).some((row) => row[c.name] !== undefined))
  if (ran.length === 0) return []
  const checks: TargetCheck[] = []
  const workers = get('scale', 'herald-cluster', 'workers')
  {
    const held = get('scale', 'herald-cluster', 'held')
    const target = get('scale', 'herald-cluster', 'target')
    if (held !== null) {
      checks.push({
        target: `cluster: ${workers ?? 'N'} workers hold ≥ 50,000 idle connections (issue 16)`,
        measured: `${fmt(held)} of ${fmt(target)} held (K = --scale-connections), ${fmt(get('scale', 'herald-cluster', 'generatorProcesses'))} generator process(es); per worker ${fmt(get('scale', 'herald-cluster', 'perWorkerMin'))}–${fmt(get('scale', 'herald-cluster', 'perWorkerMax'))}`,
        met: held >= 50_000 ? true : (target !== null && target < 50_000 ? null : false),
      })
    }
  }
  for (const c of ran) {
    const rss = get('scale', c.name, 'rssPerConnectionKB')
    const single = get('scale', 'herald', 'rssPerConnectionKB')
    if (rss === null) continue
    const redisRss = get('scale', c.name, 'redisRssPerConnectionKB')
    checks.push({
      target: `${c.label}: RSS per idle connection (primary + workers) ≤ 1.2× a single node`,
      measured: `${fmt(rss, 1)} kB at ${fmt(get('scale', c.name, 'held'))} vs ${fmt(single, 1)} kB at ${fmt(get('scale', 'herald', 'held'))} = ${ratio(rss, single)}; Redis adds ${fmt(redisRss, 1)} kB per connection`,
      met: single === null ? null : rss <= 1.2 * single,
    })
  }
  for (const phase of ['fanout-qos0', 'fanout-qos1', 'fanin-qos0', 'fanin-qos1']) {
    const single = get(phase, 'herald', 'deliveredPerSec')
    const parts = ran.map((c) => {
      const v = get(phase, c.name, 'deliveredPerSec')
      return v === null ? null : `${c.label} ${fmt(v)} = ${ratio(v, single)}`
    }).filter((x): x is string => x !== null)
    if (parts.length === 0) continue
    checks.push({ target: `${phase} msgs/s across nodes vs a single node (${fmt(single)})`, measured: parts.join('; '), met: null })
  }
  {
    const p50 = get('latency', 'herald', 'p50Ms')
    const p99 = get('latency', 'herald', 'p99Ms')
    const parts = ran.map((c) => {
      const a = get('latency', c.name, 'p50Ms')
      const b = get('latency', c.name, 'p99Ms')
      if (a === null || b === null || p50 === null || p99 === null) return null
      const cross = get('latency', c.name, 'crossNode')
      return `${c.label}${cross === 1 ? ' (publisher and subscriber on different workers)' : ''}: p50 ${fmt(a, 3)} ms (+${fmt(a - p50, 3)}), p99 ${fmt(b, 3)} ms (+${fmt(b - p99, 3)})`
    }).filter((x): x is string => x !== null)
    if (parts.length > 0) checks.push({ target: `latency the bus adds (QoS 1, vs single node p50 ${fmt(p50, 3)} ms, p99 ${fmt(p99, 3)} ms)`, measured: parts.join('; '), met: null })
  }
  for (const c of ran) {
    const parts = ['fanout-qos0', 'fanout-qos1', 'fanin-qos0', 'fanin-qos1', 'latency'].map((phase) => {
      const v = get(phase, c.name, 'redisMsPer1k')
      return v === null ? null : `${phase} ${fmt(v, 2)} ms`
    }).filter((x): x is string => x !== null)
    if (parts.length > 0) checks.push({ target: `${c.label}: Redis CPU per 1,000 messages published (a fan-out message to all its subscribers counts once)`, measured: parts.join(', '), met: null })
  }
  return checks
}

export interface MarkdownInput {
  readonly date: string
  readonly command: string
  readonly machine: Record<string, string>
  readonly brokers: readonly BrokerInfo[]
  readonly rounds: number
  readonly phases: readonly Phase[]
  readonly summary: Summary
  readonly targets: readonly TargetCheck[]
  readonly jsonFile: string
  readonly notes: readonly string[]
}

export function markdown (input: MarkdownInput): string {
  const { summary, brokers, phases } = input
  const names = brokers.map((b) => b.name)
  const has = (n: string): boolean => names.includes(n)
  const lines: string[] = []
  lines.push(`Run of ${input.date} · ${input.rounds} round(s), brokers alternated, medians shown · raw data: \`${input.jsonFile}\``)
  lines.push('')
  lines.push(`Command: \`${input.command}\``)
  lines.push('')
  lines.push(`Machine: ${Object.entries(input.machine).map(([k, v]) => `${k} ${v}`).join(' · ')}`)
  lines.push('')
  lines.push(`Brokers: ${brokers.map((b) => `${b.label} ${b.version}`).join(' · ')}`)
  lines.push('')

  const header = ['phase', 'metric', ...brokers.map((b) => b.label)]
  if (has('herald') && has('aedes')) header.push('Herald/aedes')
  if (has('herald') && has('mosquitto')) header.push('Herald/Mosquitto')
  if (has('herald') && has('herald-bare')) header.push('Herald/Herald bare')
  if (has('herald') && has('herald-b')) header.push('Herald B/Herald')
  for (const c of CLUSTERS) if (has('herald') && has(c.name)) header.push(`${c.label}/Herald`)
  lines.push(`| ${header.join(' | ')} |`)
  lines.push(`|${header.map((_, i) => i < 2 ? '---' : '--:').join('|')}|`)
  for (const phase of phases) {
    const row = summary.medians[phase.name]
    if (row === undefined) continue
    for (const spec of phase.metrics) {
      if (spec.headline !== true) continue
      // figures only some brokers have (Redis CPU): no row when none of this run's brokers has them
      if (names.every((b) => row[b]?.[spec.key] === null || row[b]?.[spec.key] === undefined)) continue
      const cells = [phase.title, `${spec.label}${spec.unit !== '' && spec.unit !== '/s' ? ` (${spec.unit})` : ''}${spec.better === 'higher' ? ' ↑' : spec.better === 'lower' ? ' ↓' : ''}`]
      for (const b of names) cells.push(fmt(row[b]?.[spec.key], spec.digits ?? 0))
      if (has('herald') && has('aedes')) cells.push(ratio(row['herald']?.[spec.key], row['aedes']?.[spec.key]))
      if (has('herald') && has('mosquitto')) cells.push(ratio(row['herald']?.[spec.key], row['mosquitto']?.[spec.key]))
      if (has('herald') && has('herald-bare')) cells.push(ratio(row['herald']?.[spec.key], row['herald-bare']?.[spec.key]))
      if (has('herald') && has('herald-b')) cells.push(ratio(row['herald-b']?.[spec.key], row['herald']?.[spec.key]))
      for (const c of CLUSTERS) if (has('herald') && has(c.name)) cells.push(ratio(row[c.name]?.[spec.key], row['herald']?.[spec.key]))
      lines.push(`| ${cells.join(' | ')} |`)
    }
  }
  lines.push('')
  lines.push(`↑ higher is better, ↓ lower is better. Ratios are Herald divided by the reference${CLUSTERS.some((c) => has(c.name)) ? '; the cluster columns are the cluster broker divided by the single-node Herald' : ''}.`)
  lines.push('')

  lines.push('CPU during each phase (median cores over the measured window: broker / load generator; a cluster: its primary and workers, + its redis-server; `other` is the rest of the machine).')
  lines.push('S = generator + broker ≥ 90% of all cores (machine saturated), G = generator ≥ 0.9 core (it may be the limit), N = other processes took ≥ 0.3 core even in the quietest attempt; in n of the rounds.')
  lines.push('')
  lines.push(`| phase | ${brokers.map((b) => b.label).join(' | ')} |`)
  lines.push(`|---|${brokers.map(() => '---').join('|')}|`)
  for (const phase of phases) {
    const row = summary.cpu[phase.name]
    if (row === undefined) continue
    const cells = [phase.title]
    for (const b of names) {
      const c = row[b]
      if (c === undefined || c.rounds === 0) { cells.push('–'); continue }
      const flags = [c.saturated > 0 ? `S${c.saturated}/${c.rounds}` : '', c.generatorBound > 0 ? `G${c.generatorBound}/${c.rounds}` : '', c.noisy > 0 ? `N${c.noisy}/${c.rounds}` : ''].filter((f) => f !== '').join(' ')
      cells.push(`${fmt(c.broker, 2)} / ${fmt(c.generator, 2)}${c.redis !== null ? ` + Redis ${fmt(c.redis, 2)}` : ''} (other ${fmt(c.other, 2)})${flags !== '' ? ` **${flags}**` : ''}`)
    }
    lines.push(`| ${cells.join(' | ')} |`)
  }
  lines.push('')

  const failed = Object.entries(summary.failures).flatMap(([phase, row]) => Object.entries(row).filter(([, n]) => n > 0).map(([b, n]) => `${phase}/${b}: ${n} failed round(s)`))
  if (failed.length > 0) {
    lines.push(`Failed runs: ${failed.join('; ')} (see the JSON document).`)
    lines.push('')
  }

  lines.push(`Issue #6 targets on this machine${CLUSTERS.some((c) => Object.values(summary.medians).some((row) => row[c.name] !== undefined)) ? ' (rows naming the cluster: issue 16, ratios to the single-node Herald of this run)' : ''}:`)
  lines.push('')
  lines.push('| target | measured | met |')
  lines.push('|---|---|---|')
  for (const t of input.targets) lines.push(`| ${t.target} | ${t.measured} | ${t.met === null ? 'n/a' : t.met ? 'yes' : '**no**'} |`)
  lines.push('')
  for (const note of input.notes) lines.push(`- ${note}`)
  if (input.notes.length > 0) lines.push('')
  return lines.join('\n')
}
