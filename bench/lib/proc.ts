import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
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

/** The soft open-files limit of this process (Node raises it to the hard one), Infinity when unlimited or unknown. */
export function openFileLimit (): number {
  try {
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    return match?.[1] === undefined || match[1] === 'unlimited' ? Infinity : Number(match[1])
  } catch {
    return Infinity
  }
}

/** Descriptors a process has open now. */
export function openDescriptors (pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length
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
  /** cores used by the broker's processes over the window (a cluster: primary and workers, not Redis) */
  readonly broker: number
  /** cores used by the load generator: this process (user + system; loopback TCP work of its sends is system time here) and any generator children */
  readonly generator: number
  readonly generatorUser: number
  readonly generatorSystem: number
  /** cores used by a cluster broker's redis-server; null for brokers without one */
  readonly redis: number | null
  /** cores used by everything else on the machine (other work disturbs the figures) */
  readonly other: number
  /** generator + broker (+ Redis) close to all cores: the figures measure the machine, not the broker */
  readonly saturated: boolean
  /** one single-threaded generator process near one core: it may be what limits the rate */
  readonly generatorBound: boolean
  /** other processes took a noticeable share of the machine: the figures are disturbed */
  readonly noisy: boolean
}

/** What a CpuMeter measures: the broker's processes, and its redis-server if it has one. */
export interface MeteredBroker {
  processIds (): readonly number[]
  readonly redisPid?: number | undefined
}

/** CPU seconds of a process, 0 once it is gone (a worker that died mid-window loses its share, and fails the phase anyway). */
function cpuSecondsOr0 (pid: number): number {
  try {
    return processCpuSeconds(pid)
  } catch {
    return 0
  }
}

/** Summed VmRSS of a broker's processes in bytes (a cluster: the primary and every worker). */
export function brokerRssBytes (broker: MeteredBroker): number {
  return broker.processIds().reduce((sum, pid) => sum + rssBytes(pid), 0)
}

/** A CPU window over the broker's processes, its redis-server, this process (and generator children) and the machine. */
export class CpuMeter {
  readonly #pids: readonly number[]
  readonly #redisPid: number | undefined
  readonly #children: readonly number[]
  readonly #t0 = performance.now()
  readonly #gen0 = process.cpuUsage()
  readonly #broker0: number
  readonly #redis0: number
  readonly #children0: readonly number[]
  readonly #machine0 = machineBusySeconds()

  /** `generatorPids`: load generator child processes (the scale phase's), counted as generator */
  constructor (broker: MeteredBroker, generatorPids: readonly number[] = []) {
    this.#pids = broker.processIds()
    this.#redisPid = broker.redisPid
    this.#children = generatorPids
    this.#broker0 = this.#pids.reduce((sum, pid) => sum + cpuSecondsOr0(pid), 0)
    this.#redis0 = this.#redisPid === undefined ? 0 : cpuSecondsOr0(this.#redisPid)
    this.#children0 = generatorPids.map(cpuSecondsOr0)
  }

  stop (): CpuShare {
    const seconds = (performance.now() - this.#t0) / 1000
    const gen = process.cpuUsage(this.#gen0)
    const children = this.#children.map((pid, i) => (cpuSecondsOr0(pid) - (this.#children0[i] ?? 0)) / seconds)
    const childrenTotal = children.reduce((a, b) => a + b, 0)
    const generatorUser = gen.user / 1e6 / seconds
    const generatorSystem = gen.system / 1e6 / seconds
    const own = generatorUser + generatorSystem
    const generator = own + childrenTotal
    const broker = (this.#pids.reduce((sum, pid) => sum + cpuSecondsOr0(pid), 0) - this.#broker0) / seconds
    const redis = this.#redisPid === undefined ? null : (cpuSecondsOr0(this.#redisPid) - this.#redis0) / seconds
    const machine = (machineBusySeconds() - this.#machine0) / seconds
    const other = Math.max(0, machine - broker - generator - (redis ?? 0))
    return {
      seconds,
      broker,
      generator,
      generatorUser,
      generatorSystem,
      redis,
      other,
      saturated: broker + generator + (redis ?? 0) >= 0.9 * CORES,
      generatorBound: Math.max(own, ...children) >= 0.9,
      noisy: other >= 0.3,
    }
  }
}
