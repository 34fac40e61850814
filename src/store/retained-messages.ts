import msgpack from 'msgpack-lite'
import { Readable } from 'node:stream'
import { HeraldError } from '../errors/index.js'
import { groupCommitTarget } from './batch-target.js'
import { GroupCommit, type BatchTarget } from './group-commit.js'
import { RetainedIndex, retainedNamespace } from './retained-index.js'
import { prefixRange } from './session-keys.js'

/** aedes-persistence-level 9's key of a retained message: `retained:<topic>` (asyncPersistence.js `storeRetained`). */
export const RETAINED_PREFIX = 'retained:'

/** Bounds on retained messages (`limits.*`); 0: no bound. */
export interface RetainedLimits {
  /** topics under `users/{uid}/` per uid */
  readonly maxRetainedPerUser: number
  /** topics under `groups/{gid}/` per gid */
  readonly maxRetainedPerGroup: number
  /** all topics together */
  readonly maxRetained: number
}

/** The defaults of config/default.json, for stores built without a config (tests, tools). */
export const DEFAULT_RETAINED_LIMITS: RetainedLimits = { maxRetainedPerUser: 1000, maxRetainedPerGroup: 10000, maxRetained: 1000000 }

/** The session store's (sub)level, as much of it as retained messages need. */
export interface RetainedDatabase {
  keys (range: { gte: string, lt: string }): AsyncIterable<string>
  getMany (keys: string[], options: { valueEncoding: 'buffer' }): Promise<Array<Buffer | undefined>>
  /** abstract-level sublevel API: this key as the root database stores it */
  prefixKey (key: string, keyFormat: 'utf8'): string
  /** the root database */
  readonly db: BatchTarget
}

/** A retained message as aedes hands it to the store and reads it back (an aedes-packet). */
export interface RetainedPacket {
  readonly topic: string
  readonly payload: Buffer
}

/** Matching messages are read from LevelDB this many keys at a time (one getMany each). */
const READ_CHUNK = 128

/**
 * Retained messages: in LevelDB under aedes-persistence-level's keys and
 * encoding (so a data directory reads the same with or without Herald's
 * store), with every retained topic in memory (RetainedIndex).
 *
 * - A SUBSCRIBE reads the messages its filters match, by key, and nothing
 *   else: its cost follows what it matches, not what is stored. Values are
 *   not kept in memory: a retained message may be as large as
 *   `limits.maxPacketBytes` (256 kB), so caching them would make memory
 *   follow the bytes stored; the index costs a few hundred bytes per topic.
 * - The index changes when a write has landed, in the order the writes were
 *   asked for (one group commit: batches go one at a time), so it always
 *   says what LevelDB holds; a topic being written for the first time counts
 *   against the bounds from the moment it is asked for.
 * - Bounds (RetainedLimits): a new retained topic beyond one is refused with
 *   TOO_MANY_RETAINED; replacing or deleting a retained message never is.
 *   Messages already stored beyond a bound lowered since stay.
 */
export class RetainedMessages {
  readonly #db: RetainedDatabase
  readonly #index = new RetainedIndex()
  readonly #commit: GroupCommit
  #limits: RetainedLimits = DEFAULT_RETAINED_LIMITS
  /** topics asked to be retained for the first time, whose write has not landed: they count against the bounds */
  readonly #reserved = new Set<string>()
  /** reserved topics per namespace (`users/alice`) */
  readonly #reservedIn = new Map<string, number>()

  constructor (db: RetainedDatabase) {
    this.#db = db
    this.#commit = new GroupCommit(groupCommitTarget(db.db))
  }

  setLimits (limits: RetainedLimits): void {
    this.#limits = { maxRetainedPerUser: limits.maxRetainedPerUser, maxRetainedPerGroup: limits.maxRetainedPerGroup, maxRetained: limits.maxRetained }
  }

  /** Reads the retained topics (keys only) into the index; at start. */
  async load (): Promise<void> {
    for await (const key of this.#db.keys(prefixRange(RETAINED_PREFIX))) this.#index.add(key.slice(RETAINED_PREFIX.length))
  }

  /** How many topics hold a retained message. */
  get size (): number {
    return this.#index.size
  }

  /**
   * Why a retained message on `topic` may not be stored now, or undefined if
   * it may: an empty payload (a delete) and a topic that holds one already
   * always may.
   */
  refusal (topic: string, payloadLength: number): HeraldError | undefined {
    if (payloadLength === 0 || this.#index.has(topic) || this.#reserved.has(topic)) return undefined
    const { maxRetained, maxRetainedPerUser, maxRetainedPerGroup } = this.#limits
    if (maxRetained > 0 && this.#index.size + this.#reserved.size >= maxRetained) {
      return new HeraldError('TOO_MANY_RETAINED', `the broker holds limits.maxRetained (${maxRetained}) retained messages`)
    }
    const namespace = retainedNamespace(topic)
    if (namespace === undefined) return undefined
    const [bound, key] = namespace.kind === 'user' ? [maxRetainedPerUser, 'maxRetainedPerUser'] : [maxRetainedPerGroup, 'maxRetainedPerGroup']
    if (bound > 0 && this.#index.countIn(namespace.key) + (this.#reservedIn.get(namespace.key) ?? 0) >= bound) {
      return new HeraldError('TOO_MANY_RETAINED', `${namespace.key}/ holds limits.${key} (${bound}) retained messages`)
    }
    return undefined
  }

  /**
   * aedes' storeRetained: an empty payload deletes the topic's retained
   * message [MQTT-3.3.1-10], any other replaces it [MQTT-3.3.1-5]. Throws
   * TOO_MANY_RETAINED (writing nothing) for a new topic beyond a bound.
   */
  async store (packet: RetainedPacket): Promise<void> {
    const { topic } = packet
    const key = this.#db.prefixKey(RETAINED_PREFIX + topic, 'utf8')
    if (packet.payload.length === 0) {
      if (!this.#index.has(topic) && !this.#reserved.has(topic)) return
      await this.#commit.write([{ type: 'del', key }])
      this.#index.delete(topic)
      return
    }
    const refused = this.refusal(topic, packet.payload.length)
    if (refused !== undefined) throw refused
    const reserved = !this.#index.has(topic) && !this.#reserved.has(topic)
    if (reserved) this.#reserve(topic)
    try {
      await this.#commit.write([{ type: 'put', key, value: msgpack.encode(packet) }])
      this.#index.add(topic)
    } finally {
      if (reserved) this.#release(topic)
    }
  }

  /**
   * The retained messages the filters match, each once, read by key in
   * chunks. aedes pipes this stream without an error handler
   * (lib/handlers/subscribe.js), so a failed read (the store reopening after
   * a full disk) ends it early rather than failing the broker: the
   * subscription stands, without the retained messages not yet read.
   */
  stream (filters: readonly string[]): Readable {
    const topics = this.#index.match(filters)
    const db = this.#db
    return Readable.from((async function * () {
      for (let start = 0; start < topics.length; start += READ_CHUNK) {
        let values: Array<Buffer | undefined>
        try {
          values = await db.getMany(topics.slice(start, start + READ_CHUNK).map((topic) => RETAINED_PREFIX + topic), { valueEncoding: 'buffer' })
        } catch {
          return
        }
        // a message deleted since the match is simply missing
        for (const value of values) if (value !== undefined) yield msgpack.decode(value) as unknown
      }
    })())
  }

  #reserve (topic: string): void {
    this.#reserved.add(topic)
    const namespace = retainedNamespace(topic)
    if (namespace !== undefined) this.#reservedIn.set(namespace.key, (this.#reservedIn.get(namespace.key) ?? 0) + 1)
  }

  #release (topic: string): void {
    this.#reserved.delete(topic)
    const namespace = retainedNamespace(topic)
    if (namespace === undefined) return
    const left = (this.#reservedIn.get(namespace.key) ?? 1) - 1
    if (left > 0) this.#reservedIn.set(namespace.key, left)
    else this.#reservedIn.delete(namespace.key)
  }
}
