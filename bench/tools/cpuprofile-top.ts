/**
 * Summarises V8 CPU profiles (`node --cpu-prof`, or `npm run bench -- --cpu-prof DIR`):
 * self and inclusive time per function, and self time per package or Herald
 * area, so hot spots can be compared between runs.
 *
 *   node dist/bench/tools/cpuprofile-top.js [--top N] [--match regex] [--from s] [--to s] [--timeline] file.cpuprofile...
 *
 * --from/--to keep only the samples in that window (seconds from the start of
 * each profile), so start-up and shutdown can be left out of a phase's
 * figures; --timeline prints busy time per half second to find the window.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

/** node_modules/<pkg>, dist/src/<area>, dist/plugins/<plugin>, node:internal … */
function owner (url: string): string {
  if (url === '') return '(native / V8)'
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm?.[1] !== undefined) return nm[1]
  const herald = /\/dist\/(src|plugins|bench)\/([^/]+)/.exec(url)
  if (herald?.[1] !== undefined && herald[2] !== undefined) return `herald ${herald[1]}/${herald[2].replace(/\.js$/, '')}`
  if (url.startsWith('node:')) return url.replace(/^node:internal\/(\w+).*$/, 'node:$1')
  return url
}

function label (frame: CallFrame): string {
  const file = frame.url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/').replace(/^file:\/\//, '')
  return `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ${file}${file !== '' ? `:${frame.lineNumber + 1}` : ''}`
}

function main (): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string' }, match: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, timeline: { type: 'boolean' } }, allowPositionals: true })
  const top = Number(values.top ?? 30)
  const fromMs = Number(values.from ?? 0) * 1000
  const toMs = values.to === undefined ? Infinity : Number(values.to) * 1000
  if (Number.isNaN(fromMs) || Number.isNaN(toMs)) throw new Error('--from/--to: seconds, e.g. --from 3.5')
  const timeline: string[] = []
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const byOwner = new Map<string, number>()
  let total = 0
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
    const byId = new Map<number, ProfileNode>()
    const parent = new Map<number, number>()
    for (const node of profile.nodes) {
      byId.set(node.id, node)
      for (const child of node.children ?? []) parent.set(child, node.id)
    }
    let at = 0
    const busyPerHalfSecond: number[] = []
    for (let i = 0; i < profile.samples.length; i++) {
      const dt = (profile.timeDeltas[i] ?? 0) / 1000
      at += dt
      const leaf = byId.get(profile.samples[i] as number)
      if (leaf === undefined) continue
      if (leaf.callFrame.functionName !== '(idle)') {
        const bucket = Math.floor(at / 500)
        busyPerHalfSecond[bucket] = (busyPerHalfSecond[bucket] ?? 0) + dt
      }
      if (at < fromMs || at > toMs) continue
      total += dt
      const leafLabel = label(leaf.callFrame)
      self.set(leafLabel, (self.get(leafLabel) ?? 0) + dt)
      const o = leaf.callFrame.functionName === '(idle)' ? '(idle)' : leaf.callFrame.functionName === '(garbage collector)' ? '(gc)' : owner(leaf.callFrame.url)
      byOwner.set(o, (byOwner.get(o) ?? 0) + dt)
      const seen = new Set<string>()
      let id: number | undefined = leaf.id
      let depth = 0
      while (id !== undefined && depth++ < 500) {
        const node = byId.get(id)
        if (node === undefined) break
        const l = label(node.callFrame)
        if (!seen.has(l)) {
          seen.add(l)
          inclusive.set(l, (inclusive.get(l) ?? 0) + dt)
        }
        id = parent.get(id)
      }
    }
    timeline.push(`${file}: busy ms per 0.5 s from the start: ${Array.from(busyPerHalfSecond, (ms = 0) => Math.round(ms)).join(' ')}`)
  }
  const idle = byOwner.get('(idle)') ?? 0
  const busy = total - idle
  const out: string[] = values.timeline === true ? timeline : []
  const pct = (ms: number): string => `${((ms / busy) * 100).toFixed(1).padStart(5)}%`
  const print = (title: string, map: Map<string, number>, filter?: RegExp): void => {
    out.push(`\n${title} (share of busy time, ${(busy / 1000).toFixed(1)} s busy of ${(total / 1000).toFixed(1)} s)`)
    const rows = [...map].filter(([k]) => k !== '(idle) :1' && !k.startsWith('(idle)') && !k.startsWith('(root)') && (filter === undefined || filter.test(k)))
      .sort((a, b) => b[1] - a[1]).slice(0, top)
    for (const [k, ms] of rows) out.push(`${pct(ms)}  ${(ms / 1000).toFixed(2).padStart(7)} s  ${k}`)
  }
  print('self time by package / Herald area', byOwner)
  print('self time by function', self)
  print('inclusive time by function', inclusive, values.match !== undefined ? new RegExp(values.match) : undefined)
  // a closed pipe (`| head`) is not an error
  process.stdout.on('error', () => process.exit(0))
  process.stdout.write(out.join('\n') + '\n')
}

main()
