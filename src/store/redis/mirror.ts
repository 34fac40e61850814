import type { Redis } from 'ioredis'
import type { RedisConnection } from './connection.js'

/**
 * A Redis hash, kept in memory on every node so that reads are synchronous
 * (the CONNECT path, the ACL, the routing path read these stores per packet).
 *
 * The protocol, shared by every store built on it:
 * - each write of the store is one Lua script that changes the hash,
 *   increments the store's sequence key (`seqKey`) and PUBLISHes the change
 *   on `channel` as `<seq>\n<json [[field, value | null], ...]>` (null:
 *   deleted). Write and message are one atomic step, so messages come in the
 *   order of the writes, numbered without gaps;
 * - a node applies the messages in order; one whose number is not the next
 *   means one was lost (they are not queued while a subscriber is away), and
 *   the node reloads;
 * - a (re)load first makes sure the subscription is active, then reads the
 *   sequence number, then the hash (HSCAN, so a big hash does not block Redis);
 *   the messages received meanwhile are applied on top, those numbered after
 *   the sequence read. Whatever the scan saw of writes made during it, those
 *   writes' messages come after and set each field to its last value;
 * - the subscriber reloads each time it (re)connects ('ready').
 * A node's own write resolves once its message came back to its own mirror
 * (`caughtUp`): the write is in this node's mirror when it resolves, and the
 * mirror never applies a reply out of order with other nodes' messages.
 */

export interface MirrorOptions<V> {
  /** the hash mirrored (ioredis adds the key prefix) */
  readonly hash: string
  /** the counter each write increments in the script that writes and publishes */
  readonly seqKey: string
  /** the change channel's name, without the prefix (conn.channel adds it) */
  readonly channel: string
  readonly decode: (raw: string) => V
  /** How long a write waits for its own change to come back before it resolves anyway (its subscriber is away). */
  readonly catchUpMs?: number
  /** HSCAN batch size of a (re)load */
  readonly scanCount?: number
  /** a failed reload (retried) or a change that could not be decoded */
  readonly onError?: (err: unknown) => void
  /** An index kept beside the mirror: told of every value a change replaces, and counted afresh after each (re)load. */
  readonly index?: MirrorIndex<V>
}

export interface MirrorIndex<V> {
  change (before: V | undefined, after: V | undefined): void
  reset (values: Iterable<V>): void
}

/** A decoded change message. */
interface Change {
  readonly seq: number
  readonly fields: ReadonlyArray<readonly [string, string | null]>
}

const RELOAD_RETRY_MS = 500

/** Parses `<seq>\n<json>`; undefined for anything else. */
export function parseChange (message: string): Change | undefined {
  const newline = message.indexOf('\n')
  if (newline < 1) return undefined
  const seq = Number(message.slice(0, newline))
  if (!Number.isSafeInteger(seq)) return undefined
  let fields: unknown
  try {
    fields = JSON.parse(message.slice(newline + 1))
  } catch {
    return undefined
  }
  if (!Array.isArray(fields)) return undefined
  const valid = fields.every((f: unknown) => Array.isArray(f) && f.length === 2 && typeof f[0] === 'string' && (typeof f[1] === 'string' || f[1] === null))
  return valid ? { seq, fields: fields as Change['fields'] } : undefined
}

/** The JSON part of a change message, built by the writer and published by its script. */
export function changeBody (fields: ReadonlyArray<readonly [string, string | null]>): string {
  return JSON.stringify(fields)
}

export class RedisMirror<V> {
  readonly #conn: RedisConnection
  readonly #options: MirrorOptions<V>
  readonly #channel: string
  #map = new Map<string, V>()
  /** the sequence number of the last change applied */
  #applied = 0
  /** changes received during a load, applied after it */
  #buffer: Change[] | undefined
  #loading: Promise<void> | undefined
  #again = false
  #retry: NodeJS.Timeout | undefined
  /** writers waiting for their change, by sequence number */
  readonly #waiters = new Map<number, Array<() => void>>()
  #sub: Redis | undefined
  #subscribed = false
  #closed = false
  #loads = 0
  #loadListeners: Array<() => void> = []
  /** called after every change applied and every load */
  readonly #watchers = new Set<() => void>()

  constructor (conn: RedisConnection, options: MirrorOptions<V>) {
    this.#conn = conn
    this.#options = options
    this.#channel = conn.channel(options.channel)
  }

  /** The prefixed channel name, for the scripts that publish on it. */
  get channel (): string { return this.#channel }
  /** How many (re)loads completed (tests). */
  get loads (): number { return this.#loads }
  get size (): number { return this.#map.size }

  get (field: string): V | undefined { return this.#map.get(field) }
  has (field: string): boolean { return this.#map.has(field) }
  entries (): IterableIterator<[string, V]> { return this.#map.entries() }
  values (): IterableIterator<V> { return this.#map.values() }

  /** Subscribes, then loads; resolves when the mirror is complete. */
  async open (): Promise<void> {
    const sub = this.#conn.subscriber()
    this.#sub = sub
    sub.on('message', (channel: string, message: string) => this.#onMessage(channel, message))
    // 'ready' comes on the first connect too, before the subscribe below resolves: only later ones are reconnects
    sub.on('ready', () => { if (this.#subscribed) void this.reload() })
    await sub.subscribe(this.#channel)
    this.#subscribed = true
    await this.reload()
  }

  /** Resolves once the change numbered `seq` (a write of this node) is applied here, or after `catchUpMs`. */
  async caughtUp (seq: number): Promise<void> {
    if (seq <= this.#applied || this.#closed) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#options.catchUpMs ?? 2000)
      timer.unref()
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      const list = this.#waiters.get(seq)
      if (list === undefined) this.#waiters.set(seq, [done])
      else list.push(done)
    })
  }

  /** Resolves after the next (re)load completes (tests). */
  async nextLoad (): Promise<void> {
    await new Promise<void>((resolve) => this.#loadListeners.push(resolve))
  }

  /** Resolves once `holds()` is true, checked now and after each change or load (tests, and a node waiting for another's write). */
  async until (holds: () => boolean): Promise<void> {
    if (holds()) return
    await new Promise<void>((resolve) => {
      const watcher = (): void => {
        if (!holds()) return
        this.#watchers.delete(watcher)
        resolve()
      }
      this.#watchers.add(watcher)
    })
  }

  /** Reloads the whole hash; a reload asked for during one runs once more after it. */
  async reload (): Promise<void> {
    if (this.#closed) return
    if (this.#loading !== undefined) {
      this.#again = true
      return await this.#loading
    }
    this.#loading = this.#reloadLoop().finally(() => { this.#loading = undefined })
    return await this.#loading
  }

  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#retry)
    for (const list of this.#waiters.values()) for (const done of list) done()
    this.#waiters.clear()
    const sub = this.#sub
    if (sub !== undefined) await sub.quit().catch(() => sub.disconnect())
  }

  async #reloadLoop (): Promise<void> {
    do {
      this.#again = false
      this.#buffer = []
      let loaded = false
      try {
        await this.#load()
        loaded = true
      } catch (err) {
        this.#options.onError?.(err)
      }
      const buffered = this.#buffer
      this.#buffer = undefined
      if (!loaded) {
        // Redis is away; the subscriber's next 'ready' reloads, and so does this timer
        if (!this.#closed) {
          clearTimeout(this.#retry)
          this.#retry = setTimeout(() => { void this.reload() }, RELOAD_RETRY_MS).unref()
        }
        return
      }
      for (const change of buffered) this.#apply(change)
      this.#loads++
      const listeners = this.#loadListeners
      this.#loadListeners = []
      for (const listener of listeners) listener()
      this.#notify()
    } while (this.#again && !this.#closed)
  }

  async #load (): Promise<void> {
    const { client } = this.#conn
    const { hash, seqKey, scanCount = 1000 } = this.#options
    // the subscription is active before the sequence number is read: no change after it is missed
    // (after a reconnect ioredis re-subscribes on its own; this waits for it)
    await this.#sub?.subscribe(this.#channel)
    const seq = Number(await client.get(seqKey) ?? 0)
    const fresh = new Map<string, V>()
    let cursor = '0'
    do {
      const [next, flat] = await client.hscan(hash, cursor, 'COUNT', scanCount)
      for (let i = 0; i + 1 < flat.length; i += 2) this.#decodeInto(fresh, flat[i] as string, flat[i + 1] as string)
      cursor = next
    } while (cursor !== '0')
    this.#map = fresh
    this.#options.index?.reset(fresh.values())
    this.#applied = seq
    // a reload may also move the number back (Redis restarted empty): whoever waits for more is not coming
    for (const [waited, list] of this.#waiters) {
      if (waited > seq) continue
      this.#waiters.delete(waited)
      for (const done of list) done()
    }
  }

  #decodeInto (map: Map<string, V>, field: string, raw: string | null): void {
    if (raw === null) {
      map.delete(field)
      return
    }
    try {
      map.set(field, this.#options.decode(raw))
    } catch (err) {
      this.#options.onError?.(err)
    }
  }

  #onMessage (channel: string, message: string): void {
    if (channel !== this.#channel) return
    const change = parseChange(message)
    if (change === undefined) {
      this.#options.onError?.(new Error(`an unreadable change message on ${channel}`))
      return
    }
    if (this.#buffer !== undefined) this.#buffer.push(change)
    else this.#apply(change)
  }

  #apply (change: Change): void {
    if (change.seq <= this.#applied) return
    if (change.seq !== this.#applied + 1) {
      // a change was lost: the reload reads a sequence number at least this one's
      void this.reload()
      return
    }
    const { index } = this.#options
    for (const [field, raw] of change.fields) {
      const before = this.#map.get(field)
      this.#decodeInto(this.#map, field, raw)
      index?.change(before, this.#map.get(field))
    }
    this.#applied = change.seq
    const list = this.#waiters.get(change.seq)
    if (list !== undefined) {
      this.#waiters.delete(change.seq)
      for (const done of list) done()
    }
    this.#notify()
  }

  #notify (): void {
    for (const watcher of [...this.#watchers]) watcher()
  }
}

/** Opens a mirror: subscribed and loaded. */
export async function openMirror<V> (conn: RedisConnection, options: MirrorOptions<V>): Promise<RedisMirror<V>> {
  const mirror = new RedisMirror(conn, options)
  await mirror.open()
  return mirror
}
