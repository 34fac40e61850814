import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'

/** `cluster.workers` as a number: `auto` is one worker per CPU core. */
export function workerCount (workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers
}

export interface PrimaryOptions {
  readonly workers: number
  /** where a line for the operator goes (stderr) */
  readonly report: (line: string) => void
  /** a worker that exits within this long of its start is not restarted at once: the next try waits (backoff up to 30 s) */
  readonly minUptimeMs?: number
}

/**
 * The primary of `herald start` with `cluster.workers` > 1: forks that many
 * workers, which run `herald start` themselves and share the listening
 * ports (node:cluster hands connections round-robin; Node 20 has no
 * reusePort). It holds no connection and no state. A worker that dies is
 * started again, with a growing pause when it keeps dying at once (a bad
 * config, Redis gone); SIGTERM/SIGINT stop every worker cleanly, and the
 * primary exits with 0 once they have.
 */
export async function runPrimary ({ workers, report, minUptimeMs = 5000 }: PrimaryOptions): Promise<number> {
  let stopping = false
  let failures = 0
  const startedAt = new Map<Worker, number>()

  const fork = (): void => {
    const worker = cluster.fork()
    startedAt.set(worker, Date.now())
  }

  cluster.on('exit', (worker, code, signal) => {
    const uptime = Date.now() - (startedAt.get(worker) ?? 0)
    startedAt.delete(worker)
    if (stopping) return
    failures = uptime < minUptimeMs ? failures + 1 : 0
    const delay = failures === 0 ? 0 : Math.min(30_000, 250 * 2 ** Math.min(failures, 7))
    report(`herald: worker ${worker.process.pid ?? '?'} exited (${signal ?? code}); starting another${delay > 0 ? ` in ${delay} ms` : ''}`)
    setTimeout(() => { if (!stopping) fork() }, delay)
  })

  for (let i = 0; i < workers; i++) fork()

  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      if (stopping) return
      stopping = true
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
      if (live.length === 0) return resolve()
      let left = live.length
      for (const worker of live) {
        worker.once('exit', () => { if (--left === 0) resolve() })
        // each worker stops cleanly on SIGTERM (src/cli/start.ts)
        worker.process.kill('SIGTERM')
      }
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
  return 0
}
