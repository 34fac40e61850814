import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { heraldSamples } from '../lib/herald-metrics.js'
import { IdleGenerators, type IdleClientSpec } from '../lib/idle-generators.js'
import type { LeanClient } from '../lib/lean-client.js'
import { brokerRssBytes, CpuMeter, openDescriptors, openFileLimit, rssBytes, type CpuShare } from '../lib/proc.js'
import type { Phase, PhaseContext } from './types.js'

/** Descriptors a process keeps for other things than client connections (files, pipes, listeners). */
const RESERVED_DESCRIPTORS = 200

/** The most idle connections `ctx.broker` can hold: each of its processes that holds connections has the open-files limit this machine gives every process. */
export function scaleCapacity (workers: number): number {
  return workers * Math.max(100, openFileLimit() - RESERVED_DESCRIPTORS)
}

interface Held {
  readonly connected: number
  readonly failed: number
  readonly firstError: string | undefined
  readonly setupSeconds: number
  readonly setupCpu: CpuShare
  readonly generators: number
  readonly generatorPids: readonly number[]
  /** connections still open */
  held (): Promise<number>
  /** PINGREQ on every connection (the in-process generator; children ping on their own) */
  ping (): void
}

/**
 * K idle devices held at once: persistent sessions with keepalive on, each
 * (by default) subscribed to its own topic as a device is to its inbox.
 * Client sockets come from 127.0.0.2… so K is not bounded by one address's
 * ephemeral ports. K is capped by what the broker's processes may hold (the
 * open-files limit of each, so a cluster of N workers holds N times more).
 * When K is more than this process can hold, the connections come from
 * several generator processes. Reports RSS per connection (summed over the
 * broker's processes: a cluster's primary and workers; its redis-server's
 * growth apart) and how many survived the hold.
 */
export const scale: Phase = {
  name: 'scale',
  title: 'Idle connections',
  defaultOn: true,
  metrics: [
    { key: 'held', label: 'connections held', unit: '', better: 'higher', digits: 0, headline: true },
    { key: 'rssPerConnectionKB', label: 'RSS per idle connection', unit: 'kB', better: 'lower', digits: 1, headline: true },
    { key: 'redisRssPerConnectionKB', label: 'Redis RSS per idle connection', unit: 'kB', better: 'lower', digits: 1, headline: true },
    { key: 'rssAfterMB', label: 'broker RSS', unit: 'MB', better: 'lower', digits: 0 },
    { key: 'setupPerSec', label: 'connect+subscribe/s', unit: '/s', better: 'higher', digits: 0 },
    { key: 'idleBrokerCpu', label: 'broker CPU while idle', unit: 'cores', better: 'lower', digits: 3 },
    { key: 'reclaimPauseMs', label: 'pause of the collection after the storm (Herald; a cluster: one worker)', unit: 'ms', better: 'lower', digits: 0 },
  ],
  applies: () => true,
  async run (ctx) {
    const o = ctx.options
    const notes: string[] = []
    const capacity = scaleCapacity(ctx.broker.workers)
    const k = Math.min(o.scaleConnections, capacity)
    if (k < o.scaleConnections) notes.push(`capped at ${k}: ${ctx.broker.workers} process(es) of ${openFileLimit()} open files each`)
    for (let i = 0; i < k; i++) ctx.broker.credentials(i)
    await sleep(300)
    const rssBefore = brokerRssBytes(ctx.broker)
    const redisBefore = ctx.broker.redisPid === undefined ? null : rssBytes(ctx.broker.redisPid)
    const pids = ctx.broker.processIds()
    const fdsBefore = pids.map((pid) => openDescriptors(pid))

    // one process holds what its open-files limit allows; beyond that, child processes
    const ownRoom = openFileLimit() - openDescriptors() - RESERVED_DESCRIPTORS
    const held = k <= ownRoom && o.scaleGenerators === 0 ? await holdInProcess(ctx, k) : await holdInChildren(ctx, k)

    // hold: PINGREQ every half keepalive keeps the sessions alive however long the hold is
    const idleMeter = new CpuMeter(ctx.broker, held.generatorPids)
    const pingEvery = o.keepaliveSec * 500
    let lastPing = performance.now()
    const holdUntil = performance.now() + o.scaleHoldSeconds * 1000
    while (performance.now() < holdUntil) {
      await sleep(Math.min(200, Math.max(1, holdUntil - performance.now())))
      if (o.keepaliveSec > 0 && performance.now() - lastPing > pingEvery) {
        held.ping()
        lastPing = performance.now()
      }
    }
    const idleCpu = idleMeter.stop()
    // Herald collects what the storm left once it is over (memory.reclaimAfterConnections): what RSS is read after, and what it paused
    const reclaim = await heraldSamples(ctx.broker, ['herald_memory_reclaim_pause_seconds_sum', 'herald_memory_reclaim_pause_seconds_count'])
    const reclaims = reclaim.herald_memory_reclaim_pause_seconds_count ?? null
    const pauseSeconds = reclaim.herald_memory_reclaim_pause_seconds_sum ?? null
    if (ctx.broker.httpPort !== undefined && reclaims === 0) notes.push('no collection after the storm when RSS was read (memory.reclaimAfterConnections is 0, or the hold was too short)')
    const stillHeld = await held.held()
    const rssAfter = brokerRssBytes(ctx.broker)
    const redisAfter = ctx.broker.redisPid === undefined ? null : rssBytes(ctx.broker.redisPid)
    // descriptors each worker opened: its share of the connections (node:cluster hands them out in turn)
    const perProcess = pids.map((pid, i) => openDescriptors(pid) - (fdsBefore[i] ?? 0))
    const perWorker = ctx.broker.workers > 1 ? perProcess.slice(1) : perProcess
    if (ctx.broker.workers > 1) notes.push(`connections per worker (descriptors opened): ${perWorker.join(' / ')}; primary ${perProcess[0] ?? '?'}`)
    if (held.generators > 1) notes.push(`${held.generators} generator processes`)
    if (held.failed > 0) notes.push(`${held.failed} connections failed (first: ${held.firstError ?? '?'})`)
    if (stillHeld < held.connected) notes.push(`${held.connected - stillHeld} connections closed during the hold`)
    return {
      metrics: {
        target: k,
        connected: held.connected,
        held: stillHeld,
        failed: held.failed,
        workers: ctx.broker.workers,
        generatorProcesses: held.generators,
        perWorkerMin: Math.min(...perWorker),
        perWorkerMax: Math.max(...perWorker),
        setupPerSec: held.connected / held.setupSeconds,
        rssBeforeMB: rssBefore / 2 ** 20,
        rssAfterMB: rssAfter / 2 ** 20,
        rssPerConnectionKB: stillHeld > 0 ? (rssAfter - rssBefore) / stillHeld / 1024 : null,
        redisRssAfterMB: redisAfter === null ? null : redisAfter / 2 ** 20,
        redisRssPerConnectionKB: redisAfter === null || redisBefore === null || stillHeld === 0 ? null : (redisAfter - redisBefore) / stillHeld / 1024,
        idleBrokerCpu: idleCpu.broker,
        idleRedisCpu: idleCpu.redis,
        reclaims,
        reclaimPauseMs: reclaims === null || pauseSeconds === null || reclaims === 0 ? null : pauseSeconds / reclaims * 1000,
      },
      cpu: held.setupCpu,
      notes,
    }
  },
}

function setupDeadlineMs (k: number): number {
  // a cluster on Redis sets up slower than LevelDB (about 260 connect+subscribe/s on a busy machine): 50,000 need minutes
  return Math.max(180_000, k * 10)
}

/** The connections in this process, as the bench always did while K fitted one process. */
async function holdInProcess (ctx: PhaseContext, k: number): Promise<Held> {
  const o = ctx.options
  const source = ctx.addresses.take(k)
  const clients: LeanClient[] = []
  let failed = 0
  let next = 0
  let firstError: string | undefined
  const deadline = performance.now() + setupDeadlineMs(k)
  const setupMeter = new CpuMeter(ctx.broker)
  const t0 = performance.now()
  // as the generator children do: PINGREQ every half keepalive from the first connection on, so a slow setup loses none to the keepalive timeout
  const pinging = o.keepaliveSec > 0 ? setInterval(() => { for (const client of clients) client.ping() }, o.keepaliveSec * 500) : undefined
  const worker = async (): Promise<void> => {
    while (next < k && performance.now() < deadline) {
      const i = next++
      const client = ctx.client({ clientId: `${ctx.tag}-i${i}`, clean: false, user: i, localAddress: source.of(i), keepalive: o.keepaliveSec })
      try {
        const rc = await client.connect()
        if (rc !== 0) throw new Error(`CONNACK ${rc}`)
        if (o.scaleSubscribe && await client.subscribe(`bench/${ctx.tag}/scale/${i}`, 1) === 0x80) throw new Error('SUBACK refused')
        clients.push(client)
      } catch (err) {
        failed++
        firstError ??= err instanceof Error ? err.message : String(err)
        client.destroy()
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(o.scaleConcurrency, k) }, worker))
  clearInterval(pinging)
  const setupSeconds = (performance.now() - t0) / 1000
  const setupCpu = setupMeter.stop()
  return {
    connected: clients.length,
    failed,
    firstError,
    setupSeconds,
    setupCpu,
    generators: 1,
    generatorPids: [],
    held: async () => clients.filter((c) => !c.closed).length,
    ping: () => { for (const client of clients) client.ping() },
  }
}

/** The connections spread over child processes, each within its open-files limit; killed after the broker stops. */
async function holdInChildren (ctx: PhaseContext, k: number): Promise<Held> {
  const o = ctx.options
  const perChild = Math.max(100, openFileLimit() - RESERVED_DESCRIPTORS)
  const count = Math.min(k, Math.max(Math.ceil(k / perChild), o.scaleGenerators))
  const source = ctx.addresses.take(k)
  const specs: IdleClientSpec[] = Array.from({ length: k }, (_, i) => {
    const credentials = ctx.broker.credentials(i)
    return {
      clientId: `${ctx.tag}-i${i}`,
      localAddress: source.of(i),
      username: credentials.username,
      password: credentials.password,
      topic: o.scaleSubscribe ? `bench/${ctx.tag}/scale/${i}` : undefined,
    }
  })
  // even shares, so that no child is the last one still connecting
  const size = Math.ceil(k / count)
  const shares = Array.from({ length: count }, (_, c) => specs.slice(c * size, (c + 1) * size))
  const generators = new IdleGenerators()
  ctx.defer(() => generators.kill())
  const t0 = performance.now()
  // the children's CPU counts as the generator's; they are forked before the window opens, and their start-up is in it
  const connecting = generators.connect(shares, {
    host: ctx.broker.host,
    port: ctx.broker.mqttPort,
    keepalive: o.keepaliveSec,
    concurrency: Math.max(1, Math.ceil(o.scaleConcurrency / count)),
    deadlineMs: setupDeadlineMs(k),
  })
  const setupMeter = new CpuMeter(ctx.broker, generators.pids)
  const result = await connecting
  const setupSeconds = (performance.now() - t0) / 1000
  const setupCpu = setupMeter.stop()
  return {
    ...result,
    setupSeconds,
    setupCpu,
    generators: count,
    generatorPids: generators.pids,
    held: async () => await generators.held(),
    // the children ping on their own
    ping: () => {},
  }
}
