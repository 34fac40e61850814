import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { performance } from 'node:perf_hooks'

/** Kernel clock ticks per second for /proc times (USER_HZ; 100 on Linux unless getconf says otherwise). */
const CLOCK_TICKS = ((): number => {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(value) && value > 0 ? value : 100
  } catch {
    return 100
  }
})()

export const CORES = cpus().length

/** utime + stime of a process, all threads, in seconds (/proc/<pid>/stat fields 14 and 15). */
export function processCpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the command name (field 2) is in parentheses and may hold spaces: split after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** Busy seconds of the whole machine (/proc/stat first line: all but idle and iowait). */
export function machineBusySeconds (): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
  const [, ...values] = line.trim().split(/\s+/)
  const n = values.map(Number)
  const busy = (n[0] ?? 0) + (n[1] ?? 0) + (n[2] ?? 0) + (n[5] ?? 0) + (n[6] ?? 0) + (n[7] ?? 0)
  return busy / CLOCK_TICKS
}

/** VmRSS of a process in bytes. */
export function rssBytes (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(match[1]) * 1024
}

export interface CpuShare {
  readonly seconds: number
  /** cores used by the broker process over the window */
  readonly broker: number
  /** cores used by this load generator process (user + system; loopback TCP work of its sends is system time here) */
  readonly generator: number
  readonly generatorUser: number
  readonly generatorSystem: number
  /** cores used by everything else on the machine (other work disturbs the figures) */
  readonly other: number
  /** generator + broker close to all cores: the figures measure the machine, not the broker */
  readonly saturated: boolean
  /** the single-threaded generator near one core: it may be what limits the rate */
  readonly generatorBound: boolean
  /** other processes took a noticeable share of the machine: the figures are disturbed */
  readonly noisy: boolean
}

/** A CPU window over the broker process, this process and the machine. */
export class CpuMeter {
  readonly #pid: number
  readonly #t0 = performance.now()
  readonly #gen0 = process.cpuUsage()
  readonly #broker0: number
  readonly #machine0 = machineBusySeconds()

  constructor (brokerPid: number) {
    this.#pid = brokerPid
    this.#broker0 = processCpuSeconds(brokerPid)
  }

  stop (): CpuShare {
    const seconds = (performance.now() - this.#t0) / 1000
    const gen = process.cpuUsage(this.#gen0)
    const generatorUser = gen.user / 1e6 / seconds
    const generatorSystem = gen.system / 1e6 / seconds
    const generator = generatorUser + generatorSystem
    const broker = (processCpuSeconds(this.#pid) - this.#broker0) / seconds
    const machine = (machineBusySeconds() - this.#machine0) / seconds
    const other = Math.max(0, machine - broker - generator)
    return {
      seconds,
      broker,
      generator,
      generatorUser,
      generatorSystem,
      other,
      saturated: broker + generator >= 0.9 * CORES,
      generatorBound: generator >= 0.9,
      noisy: other >= 0.3,
    }
  }
}
