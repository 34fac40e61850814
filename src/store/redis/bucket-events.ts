import type { Logger } from 'pino'
import type { EventPublisher } from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import { bucketKeys, type BucketScripts } from './bucket-scripts.js'
import type { RedisConnection } from './connection.js'

/** A pending event as its stream entry holds it: the topic and the event's JSON, published as is. */
interface Entry { readonly id: string, readonly topic: string, readonly event: string }

export interface PendingEventsOptions {
  /** This node's name; its pending events are in `buckets:pending:{node}`. */
  readonly node: string
  /**
   * How long this node's lease on its stream lasts without renewal: a node
   * gone for longer has its events taken over. Also how old an event of this
   * node's must be before a failed publish is tried again.
   */
  readonly leaseMs: number
}

/** How many entries a replay or a take-over handles per round trip. */
const BATCH = 200

/**
 * The bucket events that nodes wrote and have not published yet, in Redis.
 *
 * Each write's script adds its event to the writing node's stream in the same
 * step as the change (bucket-scripts.ts); the node then publishes it and
 * deletes the entry. What a crash, or a failed publish, leaves in a stream is
 * published later, by exactly one node:
 * - a node holds a lease on its stream (`buckets:lease:{node}`, renewed every
 *   third of `leaseMs`, on a timer of its own so a long publish never delays
 *   it); at start it publishes what its own stream holds (a node restarted
 *   under the same `cluster.nodeId`);
 * - every node sweeps `buckets:nodes` every half of `leaseMs`: a stream
 *   whose node has no lease is moved into the sweeper's own stream by one
 *   script (of nodes sweeping at once, one gets each event), and published;
 * - its own entries older than `leaseMs` whose publish failed are tried again.
 * An event goes out twice only if its node published it and then could not
 * delete the entry (Redis lost at that moment), or was cut off from Redis for
 * longer than its lease while publishing; events carry an `eventId`.
 */
export class PendingEvents {
  readonly #conn: RedisConnection
  readonly #scripts: BucketScripts
  readonly #node: string
  readonly #leaseMs: number
  readonly #stream: string
  readonly #inFlight = new Map<string, Promise<void>>()
  #publisher: EventPublisher | undefined
  #log: Logger | undefined
  #renewTimer: NodeJS.Timeout | undefined
  #sweepTimer: NodeJS.Timeout | undefined
  #sweeping: Promise<void> | undefined
  #failing = false

  constructor (conn: RedisConnection, scripts: BucketScripts, { node, leaseMs }: PendingEventsOptions) {
    this.#conn = conn
    this.#scripts = scripts
    this.#node = node
    this.#leaseMs = leaseMs
    this.#stream = bucketKeys.pending(node)
  }

  get node (): string { return this.#node }
  get stream (): string { return this.#stream }

  /** The lease first: while it holds, no other node takes this node's stream. */
  async start (publisher: EventPublisher, log: Logger): Promise<void> {
    this.#publisher = publisher
    this.#log = log
    await this.#renew()
    this.#renewTimer = setInterval(() => {
      this.#renew().catch((err: unknown) => this.#failed(err))
    }, Math.max(10, Math.floor(this.#leaseMs / 3)))
    this.#renewTimer.unref()
    let replayed = 0
    let after = '-'
    for (;;) {
      const entries = parseEntries(await this.#conn.client.xrange(this.#stream, after, '+', 'COUNT', BATCH))
      for (const entry of entries) {
        if (await this.#tryPublish(entry)) replayed++
      }
      if (entries.length < BATCH) break
      after = `(${entries[entries.length - 1]?.id ?? ''}`
    }
    if (replayed > 0) log.info({ replayed }, 'published bucket events left pending by the previous run of this node')
    this.#sweepTimer = setInterval(() => { void this.sweep() }, Math.max(10, Math.floor(this.#leaseMs / 2)))
    this.#sweepTimer.unref()
  }

  /** After the sweep and the publishes in flight; then the lease goes, so another node takes what is left at once. */
  async stop (): Promise<void> {
    clearInterval(this.#renewTimer)
    clearInterval(this.#sweepTimer)
    await this.#sweeping
    await Promise.allSettled([...this.#inFlight.values()])
    if (this.#publisher === undefined) return
    this.#publisher = undefined
    await this.#conn.client.del(bucketKeys.lease(this.#node)).catch(() => {})
  }

  /** Publishes the event a write just stored under `id`; rejects when the publish fails (the entry stays for a later try). */
  async publishWritten (id: string, topic: string, event: string): Promise<void> {
    await this.#publish({ id, topic, event })
  }

  /** Events not yet published, in every node's stream. */
  async count (): Promise<number> {
    const { client } = this.#conn
    const nodes = await client.smembers(bucketKeys.nodes)
    const lengths = await Promise.all(nodes.map(async (node) => await client.xlen(bucketKeys.pending(node))))
    return lengths.reduce((sum, n) => sum + n, 0)
  }

  /** Takes over the streams of nodes without a lease, retries this node's old entries. Never rejects. */
  async sweep (): Promise<void> {
    if (this.#sweeping !== undefined || this.#publisher === undefined) return await this.#sweeping
    this.#sweeping = this.#sweepOnce().finally(() => { this.#sweeping = undefined })
    return await this.#sweeping
  }

  /** Moves a node's stream here and publishes it, if its lease has expired; resolves the number of events taken. */
  async takeOver (node: string): Promise<number> {
    if (node === this.#node) return 0
    const keys = [bucketKeys.lease(node), bucketKeys.pending(node), this.#stream, bucketKeys.nodes]
    let taken = 0
    for (;;) {
      const moved = await this.#scripts.takeOver(keys, [node, this.#node, BATCH]) as Array<[string, string[]]> | null
      if (moved === null) return taken
      const entries = moved.map(([id, fields]) => toEntry(id, fields))
      taken += entries.length
      if (entries.length > 0) this.#log?.info({ node, events: entries.length }, 'took over the pending bucket events of a node whose lease expired')
      for (const entry of entries) await this.#tryPublish(entry)
      if (entries.length < BATCH) return taken
    }
  }

  async #sweepOnce (): Promise<void> {
    try {
      for (const node of await this.#conn.client.smembers(bucketKeys.nodes)) await this.takeOver(node)
      await this.#retryOwn()
      if (this.#failing) this.#log?.info('bucket events: Redis answers again')
      this.#failing = false
    } catch (err) {
      this.#failed(err)
    }
  }

  #failed (err: unknown): void {
    // once per outage: the timers run every few seconds
    if (!this.#failing) this.#log?.warn({ err }, 'bucket events: Redis did not answer the lease or the sweep; retried')
    this.#failing = true
  }

  async #renew (): Promise<void> {
    await this.#conn.client.set(bucketKeys.lease(this.#node), '1', 'PX', this.#leaseMs)
  }

  async #retryOwn (): Promise<void> {
    const [seconds, micros] = await this.#conn.client.time()
    const cutoff = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - this.#leaseMs
    const entries = parseEntries(await this.#conn.client.xrange(this.#stream, '-', String(cutoff), 'COUNT', BATCH))
    for (const entry of entries) await this.#tryPublish(entry)
  }

  async #tryPublish (entry: Entry): Promise<boolean> {
    try {
      await this.#publish(entry)
      return true
    } catch {
      return false // logged by #publish
    }
  }

  async #publish (entry: Entry): Promise<void> {
    const running = this.#inFlight.get(entry.id)
    if (running !== undefined) return await running
    const publishing = this.#publishNow(entry).finally(() => this.#inFlight.delete(entry.id))
    this.#inFlight.set(entry.id, publishing)
    return await publishing
  }

  async #publishNow ({ id, topic, event }: Entry): Promise<void> {
    const publisher = this.#publisher
    if (publisher === undefined) throw new HeraldError('SERVER_UNAVAILABLE', 'the bucket store is not started')
    try {
      await publisher.publish({ topic, payload: Buffer.from(event), qos: 1, retain: false })
    } catch (err) {
      this.#log?.error({ err, topic, entry: id }, 'bucket event not published; kept pending and tried again')
      throw err
    }
    try {
      await this.#conn.client.xdel(this.#stream, id)
    } catch (err) {
      // the event is out; its entry stays and it may go out once more (devices drop it by eventId)
      this.#log?.warn({ err, topic, entry: id }, 'bucket event published but its pending entry not deleted')
    }
  }
}

function parseEntries (raw: Array<[string, string[]]>): Entry[] {
  return raw.map(([id, fields]) => toEntry(id, fields))
}

function toEntry (id: string, fields: string[]): Entry {
  let topic = ''
  let event = ''
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'topic') topic = fields[i + 1] as string
    else if (fields[i] === 'event') event = fields[i + 1] as string
  }
  return { id, topic, event }
}
