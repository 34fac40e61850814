// Memory log of the node brokers the bench starts, preloaded into every node process:
//   NODE_OPTIONS="--import $PWD/bench/tools/mem-probe.mjs" npm run bench -- --phases scale ...
// Inside a broker (bin/herald.js or aedes-bare.js; other processes are left alone) it appends one
// JSON line every 250 ms to $MEM_PROBE_DIR/<broker>-<pid>.jsonl (default /tmp): RSS, V8 heap used
// and committed per space, external/arrayBuffers, live handles, anonymous RSS from smaps_rollup.
// SIGUSR2 logs a sample, then (with --expose-gc in NODE_OPTIONS) forces a GC and logs another.
// Plain JavaScript on purpose: it is loaded by path, not built.
import { appendFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import v8 from 'node:v8'

const script = process.argv[1] ?? ''
const broker = script.endsWith('herald.js') ? 'herald' : script.endsWith('aedes-bare.js') ? 'aedes' : null

if (broker !== null) {
  const file = join(process.env.MEM_PROBE_DIR ?? '/tmp', `${broker}-${process.pid}.jsonl`)
  const t0 = Date.now()
  const kb = (n) => Math.round(n / 1024)
  const anonymousKB = () => {
    try {
      return Number(/^Anonymous:\s+(\d+)/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1])
    } catch {
      return null
    }
  }
  const sample = (tag) => {
    const m = process.memoryUsage()
    // [used, committed] kB per V8 space
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics()
      .filter((s) => s.physical_space_size > 0)
      .map((s) => [s.space_name.replace(/_space$/, ''), [kb(s.space_used_size), kb(s.physical_space_size)]]))
    appendFileSync(file, JSON.stringify({
      tag,
      ms: Date.now() - t0,
      rssKB: kb(m.rss),
      anonymousKB: anonymousKB(),
      heapUsedKB: kb(m.heapUsed),
      heapCommittedKB: kb(m.heapTotal),
      externalKB: kb(m.external),
      arrayBuffersKB: kb(m.arrayBuffers),
      handles: process._getActiveHandles().length,
      spaces,
    }) + '\n')
  }
  setInterval(() => sample('tick'), 250).unref()
  process.on('SIGUSR2', () => {
    sample('signal')
    if (typeof globalThis.gc === 'function') {
      globalThis.gc()
      sample('after-gc')
    }
  })
}
