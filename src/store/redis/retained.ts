import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import { HeraldError } from '../../errors/index.js'
import { RetainedIndex, retainedNamespace } from '../retained-index.js'
import { DEFAULT_RETAINED_LIMITS, type RetainedLimits, type RetainedPacket } from '../retained-messages.js'
import { Serial } from '../serial.js'
import { RETAINED_COUNTS_KEY, RETAINED_KEY, RETAINED_TOPICS_KEY } from './session-keys.js'

type Arg = string | Buffer | number

interface RetainedCommands {
  heraldSessionRetain (...args: Arg[]): Promise<'added' | 'replaced' | 'deleted' | 'none' | 'maxRetained' | 'namespace'>
}

/**
 * KEYS: the retained hash, the set of topics, the counts per namespace.
 * ARGV: topic, packet ('' deletes), namespace ('' for none), maxRetained,
 * the namespace's bound, the change channel, the change id. A new topic is
 * refused beyond a bound; a topic that comes or goes is published on the
 * channel, from the script, so every node hears the changes in the order
 * Redis made them.
 */
const RETAIN = `
local topic, ns = ARGV[1], ARGV[3]
if ARGV[2] == '' then
  if redis.call('HDEL', KEYS[1], topic) == 0 then return 'none' end
  redis.call('SREM', KEYS[2], topic)
  if ns ~= '' and redis.call('HINCRBY', KEYS[3], ns, -1) <= 0 then redis.call('HDEL', KEYS[3], ns) end
  redis.call('PUBLISH', ARGV[6], '-' .. ARGV[7] .. ' ' .. topic)
  return 'deleted'
end
if redis.call('HEXISTS', KEYS[1], topic) == 1 then
  redis.call('HSET', KEYS[1], topic, ARGV[2])
  return 'replaced'
end
local maxRetained, bound = tonumber(ARGV[4]), tonumber(ARGV[5])
if maxRetained > 0 and redis.call('SCARD', KEYS[2]) >= maxRetained then return 'maxRetained' end
if ns ~= '' and bound > 0 and tonumber(redis.call('HGET', KEYS[3], ns) or '0') >= bound then return 'namespace' end
redis.call('HSET', KEYS[1], topic, ARGV[2])
redis.call('SADD', KEYS[2], topic)
if ns ~= '' then redis.call('HINCRBY', KEYS[3], ns, 1) end
redis.call('PUBLISH', ARGV[6], '+' .. ARGV[7] .. ' ' .. topic)
return 'added'
`

/** Matching messages are read this many at a time (one HMGET each). */
const READ_CHUNK = 128

/** How long a write waits to hear its own change on the channel before it applies it to the mirror itself. */
const ECHO_TIMEOUT_MS = 1000

interface Change { readonly added: boolean, readonly topic: string }

/**
 * Retained messages in Redis, for every node, with the retained topics
 * mirrored in each node's memory (RetainedIndex, as the LevelDB store keeps
 * them):
 *
 * - A SUBSCRIBE reads by key (HMGET) the messages its filters match in the
 *   mirror: its cost follows what it matches. aedes-persistence-redis scans
 *   the whole hash (HSCAN) for every wildcard filter.
 * - mayRetain answers from the mirror, synchronously (session-storage.ts says
 *   why it must); the write (a Lua script) re-checks the bounds against the
 *   counts in Redis and is the authority, so the bounds hold across the
 *   cluster: two nodes racing for the last place give one TOO_MANY_RETAINED.
 * - The mirror changes only by the change messages the script publishes, in
 *   Redis' order; a write waits for its own (so a SUBSCRIBE on this node right
 *   after sees it), at most ECHO_TIMEOUT_MS. When the subscriber connection
 *   comes back after a loss, the mirror is read again (changes sent meanwhile
 *   were lost), with the changes heard during the read applied after it.
 */
export class RedisRetained {
  readonly #client: Redis & RetainedCommands
  readonly #channel: string
  readonly #onError: (err: unknown) => void
  #subscriber: Redis | undefined
  #index = new RetainedIndex()
  #limits: RetainedLimits = DEFAULT_RETAINED_LIMITS
  /** changes heard while the mirror is being read again */
  #heard: Change[] | undefined
  /** this node's writes waiting to hear their change, by change id */
  readonly #waiting = new Map<string, () => void>()
  readonly #origin = randomUUID()
  #sequence = 0
  readonly #reloads = new Serial()
  readonly #onMessage = (channel: string, message: string): void => { if (channel === this.#channel) this.#heardChange(message) }
  readonly #onReady = (): void => { this.#reloadAfterReconnect() }

  constructor (client: Redis, channel: string, onError: (err: unknown) => void) {
    client.defineCommand('heraldSessionRetain', { numberOfKeys: 3, lua: RETAIN })
    this.#client = client as Redis & RetainedCommands
    this.#channel = channel
    this.#onError = onError
  }

  setLimits (limits: RetainedLimits): void {
    this.#limits = { maxRetainedPerUser: limits.maxRetainedPerUser, maxRetainedPerGroup: limits.maxRetainedPerGroup, maxRetained: limits.maxRetained }
  }

  /** Subscribes to the changes, then reads the mirror. */
  async open (subscriber: Redis): Promise<void> {
    this.#subscriber = subscriber
    subscriber.on('message', this.#onMessage)
    subscriber.on('ready', this.#onReady)
    await subscriber.subscribe(this.#channel)
    await this.#reload()
  }

  async close (): Promise<void> {
    const subscriber = this.#subscriber
    if (subscriber === undefined) return
    this.#subscriber = undefined
    subscriber.off('message', this.#onMessage)
    subscriber.off('ready', this.#onReady)
    for (const release of this.#waiting.values()) release()
    this.#waiting.clear()
    await subscriber.unsubscribe(this.#channel).catch(() => {})
  }

  /** Why a retained message on `topic` may not be stored now, by the mirror; undefined if it may. */
  refusal (topic: string, payloadLength: number): HeraldError | undefined {
    if (payloadLength === 0 || this.#index.has(topic)) return undefined
    const { maxRetained } = this.#limits
    if (maxRetained > 0 && this.#index.size >= maxRetained) return tooMany('maxRetained', topic, this.#limits)
    const namespace = retainedNamespace(topic)
    if (namespace === undefined) return undefined
    const bound = namespace.kind === 'user' ? this.#limits.maxRetainedPerUser : this.#limits.maxRetainedPerGroup
    return bound > 0 && this.#index.countIn(namespace.key) >= bound ? tooMany('namespace', topic, this.#limits) : undefined
  }

  /**
   * aedes' storeRetained: an empty payload deletes the topic's retained
   * message [MQTT-3.3.1-10], any other replaces it [MQTT-3.3.1-5]. Throws
   * TOO_MANY_RETAINED (writing nothing) for a new topic beyond a bound.
   */
  async store (packet: RetainedPacket): Promise<void> {
    const { topic } = packet
    const namespace = retainedNamespace(topic)
    const bound = namespace === undefined ? 0 : namespace.kind === 'user' ? this.#limits.maxRetainedPerUser : this.#limits.maxRetainedPerGroup
    const id = `${this.#origin}.${++this.#sequence}`
    const heard = new Promise<void>((resolve) => this.#waiting.set(id, resolve))
    const value = packet.payload.length === 0 ? '' : msgpack.encode(packet)
    let outcome
    try {
      outcome = await this.#client.heraldSessionRetain(RETAINED_KEY, RETAINED_TOPICS_KEY, RETAINED_COUNTS_KEY, topic, value, namespace?.key ?? '', this.#limits.maxRetained, bound, this.#channel, id)
    } catch (err) {
      this.#waiting.delete(id)
      throw err
    }
    if (outcome === 'maxRetained' || outcome === 'namespace') {
      this.#waiting.delete(id)
      throw tooMany(outcome, topic, this.#limits)
    }
    if (outcome !== 'added' && outcome !== 'deleted') {
      this.#waiting.delete(id)
      return
    }
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((resolve) => { timer = setTimeout(resolve, ECHO_TIMEOUT_MS, true) })
    const timedOut = await Promise.race([heard.then(() => false), late])
    clearTimeout(timer)
    if (!timedOut) return
    // the subscriber is away: its return reloads the mirror; until then this node knows its own write
    this.#waiting.delete(id)
    apply(this.#index, { added: outcome === 'added', topic })
  }

  /**
   * The retained messages the filters match, each once, read by key in
   * chunks. aedes pipes this stream without an error handler
   * (lib/handlers/subscribe.js), so a failed read ends it early: the
   * subscription stands, without the retained messages not yet read.
   */
  stream (filters: readonly string[]): NodeJS.ReadableStream {
    const topics = this.#index.match(filters)
    const client = this.#client
    return Readable.from((async function * () {
      for (let start = 0; start < topics.length; start += READ_CHUNK) {
        let values: Array<Buffer | null>
        try {
          values = await client.hmgetBuffer(RETAINED_KEY, ...topics.slice(start, start + READ_CHUNK))
        } catch {
          return
        }
        // a message deleted since the match is simply missing
        for (const value of values) if (value !== null) yield msgpack.decode(value) as unknown
      }
    })())
  }

  /** `+<id> <topic>` or `-<id> <topic>`, as the script publishes them. */
  #heardChange (message: string): void {
    const space = message.indexOf(' ')
    if (space < 2) return
    const change = { added: message[0] === '+', topic: message.slice(space + 1) }
    if (this.#heard !== undefined) this.#heard.push(change)
    else apply(this.#index, change)
    const id = message.slice(1, space)
    const release = this.#waiting.get(id)
    if (release === undefined) return
    this.#waiting.delete(id)
    release()
  }

  /** After the subscriber reconnected: once its subscription is back (ioredis re-subscribes after 'ready'), the mirror is read again. */
  #reloadAfterReconnect (): void {
    const subscriber = this.#subscriber
    if (subscriber === undefined) return
    subscriber.subscribe(this.#channel)
      .then(async () => { await this.#reload() })
      .catch(this.#onError)
  }

  /** Reads every retained topic into a new mirror; changes heard meanwhile are applied after, in order. */
  async #reload (): Promise<void> {
    await this.#reloads.run(async () => {
      const heard: Change[] = []
      this.#heard = heard
      try {
        const fresh = new RetainedIndex()
        let cursor = '0'
        do {
          const [next, topics] = await this.#client.sscan(RETAINED_TOPICS_KEY, cursor, 'COUNT', 1000)
          cursor = next
          for (const topic of topics) fresh.add(topic)
        } while (cursor !== '0')
        for (const change of heard) apply(fresh, change)
        this.#index = fresh
      } finally {
        this.#heard = undefined
      }
    })
  }
}

function apply (index: RetainedIndex, { added, topic }: Change): void {
  if (added) index.add(topic)
  else index.delete(topic)
}

function tooMany (bound: 'maxRetained' | 'namespace', topic: string, limits: RetainedLimits): HeraldError {
  if (bound === 'maxRetained') return new HeraldError('TOO_MANY_RETAINED', `the broker holds limits.maxRetained (${limits.maxRetained}) retained messages`)
  const namespace = retainedNamespace(topic)
  const [max, key] = namespace?.kind === 'user' ? [limits.maxRetainedPerUser, 'maxRetainedPerUser'] : [limits.maxRetainedPerGroup, 'maxRetainedPerGroup']
  return new HeraldError('TOO_MANY_RETAINED', `${namespace?.key ?? topic}/ holds limits.${key} (${max}) retained messages`)
}
