import { spawnSync } from 'node:child_process'

/**
 * V8 flags of the load generator (the bench's own process):
 * - no memory reducer: it runs full collections of a heap that looks idle
 *   8 s after one that shrank it, in the middle of whatever phase is on (in
 *   the latency phase, two of 5–6 ms under a 14 ms max: bench/RESULTS.md,
 *   "thirteenth session");
 * - `gc` exposed, for `collectGarbage`.
 */
const GENERATOR_V8_FLAGS = ['--no-memory-reducer', '--expose-gc']

/**
 * Runs the bench again with the generator's V8 flags when it was started
 * without them (`node dist/bench/run.js`): V8 reads them when it sets up the
 * heap. Returns whether it did; the exit code is then the second run's.
 */
export function relaunchedWithGeneratorFlags (): boolean {
  const missing = GENERATOR_V8_FLAGS.filter((flag) => !process.execArgv.includes(flag))
  if (missing.length === 0) return false
  const run = spawnSync(process.execPath, [...missing, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' })
  process.exitCode = run.status ?? 1
  return true
}

/**
 * A full collection of the load generator's own heap, at a moment the phase
 * chooses. A plain `gc()`, not Herald's `openGarbageCollector`
 * (src/memory/collect-garbage.ts): that one is V8's low-memory notification,
 * which also shrinks the young generation to 1 MB, and the generator would
 * then scavenge more often within the window it is clearing the way for.
 */
export function collectGarbage (): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('collectGarbage: the bench runs with --expose-gc (relaunchedWithGeneratorFlags)')
  gc()
}
