import type { Redis } from 'ioredis'
import type { DeadLetter, RelayJob, RelayStore } from '../../../plugins/push-core/index.js'
import type { RedisConnection } from './connection.js'
import { defineScript, type Script } from './script.js'
import { RedisDeadLetters } from './relay-dead-letters.js'
import { checkExec, FORGET_CONSUMER_LUA, GROUP, KEYS, REFRESH_LUA, RELEASE_LUA } from './relay-outbox-scripts.js'

export interface RedisRelayStoreOptions {
  /** This node's name in the consumer group (its node id); unique among the live nodes. */
  readonly consumer: string
  /**
   * A job whose node has not refreshed it for this long is taken over by another
   * node (ms). Nodes refresh the jobs they hold every third of it, so it only has
   * to outlast a stalled event loop or a short Redis outage, not a slow send.
   */
  readonly claimIdleMs?: number
  /** Longest wait of one blocking read for new jobs (ms); a read also ends when the next look for abandoned jobs is due. */
  readonly blockMs?: number
}

export const DEFAULT_CLAIM_IDLE_MS = 30_000

/**
 * The relay outbox of a cluster, on a Redis Stream with one consumer group:
 * each job is read by exactly one node (XREADGROUP), stays in that node's
 * pending list while it is retried, and leaves the stream when it is settled
 * (XACK and XDEL in one MULTI).
 *
 * Keys (under the deployment's prefix):
 * - `relay:jobs`: the stream, one entry per job, field `job` = the job as JSON
 *   when it was enqueued; group `relay`, one consumer per node (its node id);
 * - `relay:state`: hash, job id → `{attempts, notBefore}` once a job has been
 *   retried: an entry cannot be changed in place, and a job taken over must
 *   keep its attempts and its next-attempt time;
 * - `relay:dead`: hash, job id → the dead letter as JSON.
 *
 * A node keeps the entries it holds from looking abandoned: every
 * `claimIdleMs / 3` it resets their idle time (XCLAIM to itself, in a script
 * that first checks each is still its own, so it never takes one back from the
 * node that took it over; those are reported lost). Every `claimIdleMs / 4` a
 * node takes over entries idle for longer than `claimIdleMs` (XAUTOCLAIM):
 * those of a node that died. At start it first takes its own pending entries
 * (a restart under the same node id); on close it marks what it still holds as
 * idle, so that the other nodes take it over at once.
 *
 * What a job's sending may duplicate: only the jobs a node had handed to a
 * provider without having settled them when it died (or stalled for longer
 * than `claimIdleMs`) are sent again by the node that takes them over.
 */
export async function openRedisRelayStore (conn: RedisConnection, options: RedisRelayStoreOptions): Promise<RelayStore> {
  const store = new RedisRelayOutbox(conn, options)
  await store.open()
  return store
}

/** Entries per script call of the heartbeat and the release at close. */
const CHUNK = 500

type StreamEntry = [id: string, fields: string[] | null]

interface RetryState { readonly attempts: number, readonly notBefore: number }

class RedisRelayOutbox implements RelayStore {
  readonly #conn: RedisConnection
  readonly #client: Redis
  readonly #nodeId: string
  readonly #claimIdleMs: number
  readonly #blockMs: number
  readonly #reclaimEveryMs: number
  readonly #refresh: Script
  readonly #release: Script
  readonly #forgetConsumer: Script
  readonly #dead: RedisDeadLetters
  /** job id → stream entry id, for every job this node took and has not settled */
  readonly #held = new Map<string, string>()
  readonly #lostListeners: Array<(ids: readonly string[]) => void> = []
  /** where the read of this consumer's own pending entries (a previous life's) goes on; undefined once done */
  #ownCursor: string | undefined = '0'
  #reclaimCursor = '0-0'
  #nextReclaim = 0
  /** the connection of blocking reads (a blocked connection takes no other command) */
  #reader: Redis | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #refreshing = false
  #closed = false

  constructor (conn: RedisConnection, options: RedisRelayStoreOptions) {
    this.#conn = conn
    this.#client = conn.client
    this.#nodeId = options.consumer
    this.#claimIdleMs = options.claimIdleMs ?? DEFAULT_CLAIM_IDLE_MS
    this.#reclaimEveryMs = Math.max(1, Math.floor(this.#claimIdleMs / 4))
    this.#blockMs = options.blockMs ?? 5000
    this.#refresh = defineScript(this.#client, 'heraldRelayRefresh', 1, REFRESH_LUA)
    this.#release = defineScript(this.#client, 'heraldRelayRelease', 1, RELEASE_LUA)
    this.#forgetConsumer = defineScript(this.#client, 'heraldRelayForgetConsumer', 1, FORGET_CONSUMER_LUA)
    this.#dead = new RedisDeadLetters(this.#client)
  }

  async open (): Promise<void> {
    await this.#createGroup()
    this.#heartbeat = setInterval(() => { void this.#refreshHeld() }, Math.max(1, Math.floor(this.#claimIdleMs / 3)))
    this.#heartbeat.unref()
  }

  async enqueue (jobs: readonly RelayJob[]): Promise<void> {
    if (jobs.length === 0) return
    const multi = this.#client.multi()
    for (const job of jobs) multi.xadd(KEYS.stream, '*', 'job', JSON.stringify(job))
    checkExec(await multi.exec())
  }

  async take (max: number, signal: AbortSignal): Promise<RelayJob[]> {
    const count = Math.max(1, Math.floor(max))
    try {
      while (!signal.aborted && !this.#closed) {
        // 1. what this node id held before a restart
        if (this.#ownCursor !== undefined) {
          const entries = await this.#readGroup(this.#client, count, undefined, this.#ownCursor)
          const last = entries.at(-1)
          this.#ownCursor = last?.[0]
          const jobs = await this.#adopt(entries, true)
          if (jobs.length > 0) return jobs
          continue
        }
        // 2. the jobs of nodes that stopped refreshing theirs
        if (Date.now() >= this.#nextReclaim) {
          const jobs = await this.#reclaim(count)
          if (jobs.length > 0) return jobs
        }
        // 3. new jobs, waiting for them until the next look for abandoned ones
        const block = Math.max(1, Math.min(this.#blockMs, this.#nextReclaim - Date.now()))
        this.#reader ??= this.#conn.subscriber()
        const reader = this.#reader
        const stop = (): void => {
          // a blocked read ends only with its connection; the next take gets a new one
          if (this.#reader === reader) this.#reader = undefined
          reader.disconnect()
        }
        signal.addEventListener('abort', stop)
        let entries: StreamEntry[]
        try {
          entries = await this.#readGroup(reader, count, block, '>')
        } finally {
          signal.removeEventListener('abort', stop)
        }
        const jobs = await this.#adopt(entries, false)
        if (jobs.length > 0 || entries.length === 0) return jobs
      }
      return []
    } catch (err) {
      // the read was cut by close(): what it may have read is released with the rest
      if (signal.aborted || this.#closed) return []
      if (err instanceof Error && err.message.startsWith('NOGROUP')) {
        // Redis lost its data (a restart without persistence): the group comes back, the caller asks again
        await this.#createGroup()
      }
      throw err
    }
  }

  async update (job: RelayJob): Promise<void> {
    const state: RetryState = { attempts: job.attempts, notBefore: job.notBefore }
    await this.#client.hset(KEYS.state, job.id, JSON.stringify(state))
  }

  async settle (ids: readonly string[]): Promise<void> {
    const held = ids.flatMap((id) => {
      const entry = this.#held.get(id)
      return entry === undefined ? [] : [{ id, entry }]
    })
    if (held.length === 0) return
    const entries = held.map((h) => h.entry)
    checkExec(await this.#client.multi()
      .xack(KEYS.stream, GROUP, ...entries)
      .xdel(KEYS.stream, ...entries)
      .hdel(KEYS.state, ...held.map((h) => h.id))
      .exec())
    for (const { id } of held) this.#held.delete(id)
  }

  async deadLetter (job: RelayJob, reason: string): Promise<void> {
    const dead: DeadLetter = { ...job, reason, deadAt: Date.now() }
    const multi = this.#client.multi().hset(KEYS.dead, job.id, JSON.stringify(dead)).hdel(KEYS.state, job.id)
    const entry = this.#held.get(job.id)
    if (entry !== undefined) multi.xack(KEYS.stream, GROUP, entry).xdel(KEYS.stream, entry)
    checkExec(await multi.exec())
    this.#held.delete(job.id)
  }

  deadLetters (): AsyncIterable<DeadLetter> { return this.#dead.all() }

  async listDeadLetters (options: { after?: string, limit: number }): Promise<{ letters: DeadLetter[], next: string | null }> { return await this.#dead.list(options) }

  async getDeadLetter (id: string): Promise<DeadLetter | undefined> { return await this.#dead.get(id) }

  async replayDeadLetter (id: string, revive: (letter: DeadLetter) => RelayJob): Promise<RelayJob | undefined> { return await this.#dead.replay(id, revive) }

  async deleteDeadLetters (ids?: readonly string[]): Promise<number> { return await this.#dead.delete(ids) }

  async deadLetterCount (): Promise<number> { return await this.#dead.count() }

  async count (): Promise<number> {
    return await this.#client.xlen(KEYS.stream)
  }

  onLost (listener: (ids: readonly string[]) => void): void {
    this.#lostListeners.push(listener)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#heartbeat)
    this.#reader?.disconnect()
    // what this node holds unsettled goes to the other nodes now, not after claimIdleMs
    try {
      let from = '-'
      for (;;) {
        const last = await this.#release([KEYS.stream], [GROUP, this.#nodeId, this.#claimIdleMs, from, CHUNK]) as string
        if (last === '') break
        from = `(${last}`
      }
    } catch {
      // Redis is away: the entries become idle by themselves and are taken over after claimIdleMs
    }
    this.#held.clear()
  }

  async #createGroup (): Promise<void> {
    try {
      // ioredis prefixes no key of XGROUP and XINFO (container commands): the prefix is added here
      await this.#client.xgroup('CREATE', this.#conn.keyPrefix + KEYS.stream, GROUP, '0', 'MKSTREAM')
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err
    }
  }

  async #readGroup (client: Redis, count: number, blockMs: number | undefined, from: string): Promise<StreamEntry[]> {
    const args: Array<string | number> = ['GROUP', GROUP, this.#nodeId, 'COUNT', count]
    if (blockMs !== undefined) args.push('BLOCK', blockMs)
    args.push('STREAMS', KEYS.stream, from)
    const reply = await (client.xreadgroup as (...a: Array<string | number>) => Promise<unknown>)(...args) as Array<[string, StreamEntry[]]> | null
    return reply?.[0]?.[1] ?? []
  }

  /** One step of the scan for abandoned entries; a full pass is followed by a pause and a clean-up of dead consumers. */
  async #reclaim (count: number): Promise<RelayJob[]> {
    const [next, entries] = await this.#client.xautoclaim(KEYS.stream, GROUP, this.#nodeId, this.#claimIdleMs, this.#reclaimCursor, 'COUNT', count) as [string, StreamEntry[], string[]]
    this.#reclaimCursor = next
    if (next === '0-0') {
      this.#nextReclaim = Date.now() + this.#reclaimEveryMs
      await this.#forgetDeadConsumers()
    }
    return await this.#adopt(entries, true)
  }

  /**
   * Consumers are named after nodes, and a node id changes at each start by
   * default (host name and pid): those that hold nothing and have not read for
   * a long time leave the group, so it does not grow without end.
   */
  async #forgetDeadConsumers (): Promise<void> {
    const consumers = await this.#client.xinfo('CONSUMERS', this.#conn.keyPrefix + KEYS.stream, GROUP) as unknown[][]
    for (const flat of consumers) {
      const info = new Map<string, unknown>()
      for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), flat[i + 1])
      const name = String(info.get('name'))
      if (name === this.#nodeId || Number(info.get('pending')) > 0) continue
      if (Number(info.get('idle')) < 10 * this.#claimIdleMs) continue
      await this.#forgetConsumer([KEYS.stream], [GROUP, name])
    }
  }

  /**
   * Entries this node now holds → jobs, with their retry state when they may
   * have been tried before (`withState`). Entries whose job is gone or
   * unreadable are acknowledged away; a job this node already holds is not
   * handed out twice.
   */
  async #adopt (entries: readonly StreamEntry[], withState: boolean): Promise<RelayJob[]> {
    const junk: string[] = []
    const found: Array<{ entry: string, job: RelayJob }> = []
    for (const [entry, fields] of entries) {
      const raw = fields === null ? undefined : fieldOf(fields, 'job')
      let job: RelayJob | undefined
      try {
        job = raw === undefined ? undefined : JSON.parse(raw) as RelayJob
      } catch {
        job = undefined
      }
      if (job === undefined || typeof job.id !== 'string') {
        junk.push(entry)
        continue
      }
      if (this.#held.has(job.id)) continue
      this.#held.set(job.id, entry)
      found.push({ entry, job })
    }
    if (junk.length > 0) checkExec(await this.#client.multi().xack(KEYS.stream, GROUP, ...junk).xdel(KEYS.stream, ...junk).exec())
    if (!withState || found.length === 0) return found.map((f) => f.job)
    const states = await this.#client.hmget(KEYS.state, ...found.map((f) => f.job.id))
    return found.map(({ job }, i) => {
      const raw = states[i]
      if (raw === null || raw === undefined) return job
      const state = JSON.parse(raw) as RetryState
      return { ...job, attempts: state.attempts, notBefore: state.notBefore }
    })
  }

  /** The heartbeat: keeps the entries this node holds from looking abandoned, and learns which it lost. */
  async #refreshHeld (): Promise<void> {
    if (this.#refreshing || this.#closed || this.#held.size === 0) return
    this.#refreshing = true
    try {
      const byEntry = new Map([...this.#held].map(([id, entry]) => [entry, id]))
      const entries = [...byEntry.keys()]
      const lost: string[] = []
      for (let i = 0; i < entries.length; i += CHUNK) {
        const gone = await this.#refresh([KEYS.stream], [GROUP, this.#nodeId, ...entries.slice(i, i + CHUNK)]) as string[]
        for (const entry of gone) {
          const id = byEntry.get(entry)
          // settled meanwhile (the script ran after the settle): not lost
          if (id === undefined || this.#held.get(id) !== entry) continue
          this.#held.delete(id)
          lost.push(id)
        }
      }
      if (lost.length > 0) for (const listener of this.#lostListeners) listener(lost)
    } catch {
      // Redis is away: the next beat tries again; past claimIdleMs other nodes may take these jobs over
    } finally {
      this.#refreshing = false
    }
  }
}

function fieldOf (fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}
