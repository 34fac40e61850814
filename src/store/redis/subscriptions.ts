import type { StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'
import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import QlobberSub from 'qlobber/aedes/qlobber-sub.js'
import { Serial } from '../serial.js'
import { CLIENTS_KEY, EXACT_SUBSCRIPTIONS_COUNT_KEY, SUBSCRIPTIONS_SEQ_KEY, clientSubscriptionsKey, exactSubscribersKey } from './session-keys.js'

type Arg = string | Buffer | number

interface SubscriptionCommands {
  heraldSessionSubscribe (...args: Arg[]): Promise<number>
  heraldSessionUnsubscribe (...args: Arg[]): Promise<number>
}

/** A subscription as aedes stores it: topic and QoS, and MQTT 5 options it may carry. */
export interface Subscription { topic: string, qos: number, rh?: number, rap?: boolean, nl?: boolean }

/**
 * KEYS: the client's hash, the set of clients, the sequence, the count of
 * exact subscriptions, then each subscription's exactSubscribersKey. ARGV:
 * client id, channel, change body (empty: no change for the tries), then
 * (topic, encoded subscription, kind) triples, kind `w` a wildcard filter
 * (the tries have it), `a` an exact one of QoS > 0 (its topic's hash gets
 * it), `d` an exact one of QoS 0 (which queues nothing and replaces one of
 * higher QoS: out of its topic's hash). The change is published, numbered,
 * by the script that writes it; 0 when there was none.
 */
const SUBSCRIBE = `
local n = 4
for i = 4, #ARGV, 3 do
  n = n + 1
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] == 'a' then
    if redis.call('HSET', KEYS[n], ARGV[1], ARGV[i + 1]) == 1 then redis.call('INCR', KEYS[4]) end
  elseif ARGV[i + 2] == 'd' then
    if redis.call('HDEL', KEYS[n], ARGV[1]) == 1 and redis.call('DECR', KEYS[4]) <= 0 then redis.call('DEL', KEYS[4]) end
  end
end
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[3] == '' then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], seq .. '\\n' .. ARGV[3])
return seq
`

/**
 * As SUBSCRIBE, with the topics to remove after the body, each with its
 * exactSubscribersKey after the count (a wildcard filter's is never written);
 * a client left with none leaves the set.
 */
const UNSUBSCRIBE = `
for i = 4, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  if redis.call('HDEL', KEYS[i + 1], ARGV[1]) == 1 and redis.call('DECR', KEYS[4]) <= 0 then redis.call('DEL', KEYS[4]) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
if ARGV[3] == '' then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], seq .. '\\n' .. ARGV[3])
return seq
`

/** A change as published: the client, and the subscriptions added or the topics removed. */
interface Change { readonly c: string, readonly add?: Subscription[], readonly rm?: string[] }

/** How long a write waits for its own change to come back before it resolves anyway (its subscriber is away). */
const CATCH_UP_MS = 1000

/** Clients read per pipeline during a (re)load. */
const LOAD_CHUNK = 200

// the options aedes-persistence uses: `#` also matches the parent level ([MQTT-4.7.1-2])
const TRIE_OPTIONS = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true }

/**
 * Persistent subscriptions in Redis, in aedes-persistence-redis' layout
 * (`clients`, a hash `client:<id>` of msgpack subscriptions per client).
 * What aedes asks for each QoS > 0 message (subscriptionsByTopic) is the
 * subscriptions that queue it (QoS > 0) whose filter matches its topic:
 * - exact filters (no wildcard; a device's inbox, most of them) are also in
 *   one hash per topic (`topic:<filter>`, client id → subscription), read
 *   for each message: no node holds them in memory, so a node's memory does
 *   not grow with the cluster's devices (each node mirrored every one of
 *   them before: about 0.7 kB a subscription on every node);
 * - wildcard filters are in a trie on every node, since a topic's matching
 *   filters cannot be looked up in Redis by key.
 *
 * The library keeps its trie in step through broadcasts on the MQTT bus
 * (BroadcastPersistence, `$SYS/sub/add`): a broadcast sent while a node's bus
 * subscriber is reconnecting is lost, nothing reloads the trie, and from then
 * on that node never queues messages it publishes for that subscription (an
 * acknowledged message lost for an offline device); a subscribe also waits
 * without end for its own broadcast while the bus is away. Here each write is
 * one Lua script that changes the hash, numbers the change and publishes it
 * on a channel of the store's own, so every node applies the changes in the
 * order Redis made them; a node that misses one (a number skipped) or whose
 * subscriber reconnects reads the whole trie again, the changes heard
 * meanwhile applied on top (the protocol of store/redis/mirror.ts). A write
 * resolves once this node has applied it.
 */
export class RedisSubscriptions {
  readonly #client: Redis & SubscriptionCommands
  readonly #channel: string
  readonly #onError: (err: unknown) => void
  #trie = new QlobberSub(TRIE_OPTIONS)
  /** number of the last change applied */
  #applied = 0
  /** changes heard during a (re)load, applied after it */
  #heard: Array<[number, Change]> | undefined
  /** writers waiting for their change, by number */
  readonly #waiting = new Map<number, () => void>()
  #subscriber: Redis | undefined
  #subscribed = false
  readonly #loads = new Serial()
  readonly #onMessage = (channel: string, message: string): void => { if (channel === this.#channel) this.#heardChange(message) }
  readonly #onReady = (): void => { if (this.#subscribed) this.#reloadInBackground() }

  constructor (client: Redis, channel: string, onError: (err: unknown) => void) {
    // the number of keys is the first argument of each call (one key per subscription)
    client.defineCommand('heraldSessionSubscribe', { lua: SUBSCRIBE })
    client.defineCommand('heraldSessionUnsubscribe', { lua: UNSUBSCRIBE })
    this.#client = client as Redis & SubscriptionCommands
    this.#channel = channel
    this.#onError = onError
  }

  /** Subscribes to the changes, then loads the trie. */
  async open (subscriber: Redis): Promise<void> {
    this.#subscriber = subscriber
    subscriber.on('message', this.#onMessage)
    // 'ready' comes on the first connect too: only those after the subscription are reconnects
    subscriber.on('ready', this.#onReady)
    await subscriber.subscribe(this.#channel)
    this.#subscribed = true
    await this.#reload()
  }

  async close (): Promise<void> {
    const subscriber = this.#subscriber
    if (subscriber === undefined) return
    this.#subscriber = undefined
    this.#subscribed = false
    subscriber.off('message', this.#onMessage)
    subscriber.off('ready', this.#onReady)
    for (const release of this.#waiting.values()) release()
    this.#waiting.clear()
    await subscriber.unsubscribe(this.#channel).catch(() => {})
  }

  async add (clientId: string, subs: readonly Subscription[]): Promise<void> {
    if (subs.length === 0) return
    const wild = subs.filter((sub) => isWildcard(sub.topic))
    const body = wild.length === 0 ? '' : JSON.stringify({ c: clientId, add: wild } satisfies Change)
    const triples = subs.flatMap((sub) => [sub.topic, msgpack.encode(sub), isWildcard(sub.topic) ? 'w' : sub.qos > 0 ? 'a' : 'd'])
    const keys = [clientSubscriptionsKey(clientId), CLIENTS_KEY, SUBSCRIPTIONS_SEQ_KEY, EXACT_SUBSCRIPTIONS_COUNT_KEY, ...subs.map((sub) => exactSubscribersKey(sub.topic))]
    await this.#caughtUp(await this.#client.heraldSessionSubscribe(keys.length, ...keys, clientId, this.#channel, body, ...triples))
  }

  async remove (clientId: string, topics: readonly string[]): Promise<void> {
    if (topics.length === 0) return
    const wild = topics.filter(isWildcard)
    const body = wild.length === 0 ? '' : JSON.stringify({ c: clientId, rm: wild } satisfies Change)
    const keys = [clientSubscriptionsKey(clientId), CLIENTS_KEY, SUBSCRIPTIONS_SEQ_KEY, EXACT_SUBSCRIPTIONS_COUNT_KEY, ...topics.map(exactSubscribersKey)]
    await this.#caughtUp(await this.#client.heraldSessionUnsubscribe(keys.length, ...keys, clientId, this.#channel, body, ...topics))
  }

  /** The client's subscriptions, read from Redis (not the trie, which holds only those of QoS > 0 and may lag another node's write by a moment). */
  async byClient (clientId: string): Promise<Subscription[]> {
    const stored = await this.#client.hgetallBuffer(clientSubscriptionsKey(clientId))
    return Object.entries(stored).map(([topic, value]) => decode(topic, value))
  }

  /** Every (client, filter) of QoS > 0 whose filter matches the topic: the wildcard ones from the trie, the exact ones from the topic's hash. */
  async match (topic: string): Promise<StoredSubscription[]> {
    const wild = this.#trie.match(topic)
    const exact = await this.#client.hgetallBuffer(exactSubscribersKey(topic))
    for (const [clientId, value] of Object.entries(exact)) {
      const { qos, rh, rap, nl } = decode(topic, value)
      wild.push({ clientId, topic, qos, rh, rap, nl } as StoredSubscription)
    }
    return wild
  }

  /** The clients with a subscription of QoS > 0 to exactly this filter. */
  async clientsOf (filter: string): Promise<string[]> {
    if (!isWildcard(filter)) return await this.#client.hkeys(exactSubscribersKey(filter))
    return this.#trie.match(filter, filter).map((sub) => sub.clientId)
  }

  /** The subscriptions of QoS > 0 of the cluster. */
  async count (): Promise<number> {
    return this.#trie.subscriptionsCount + Number(await this.#client.get(EXACT_SUBSCRIPTIONS_COUNT_KEY) ?? 0)
  }

  async has (clientId: string): Promise<boolean> {
    return await this.#client.sismember(CLIENTS_KEY, clientId) === 1
  }

  async clientCount (): Promise<number> {
    return await this.#client.scard(CLIENTS_KEY)
  }

  /** `<seq>\n<json change>`, as the scripts publish them. */
  #heardChange (message: string): void {
    const newline = message.indexOf('\n')
    const seq = Number(message.slice(0, newline))
    let change: Change
    try {
      change = JSON.parse(message.slice(newline + 1)) as Change
    } catch (err) {
      this.#onError(err)
      return
    }
    if (this.#heard !== undefined) {
      this.#heard.push([seq, change])
      return
    }
    if (seq <= this.#applied) return
    apply(this.#trie, change)
    // a number skipped: a change was lost; the whole trie is read again
    if (seq !== this.#applied + 1) this.#reloadInBackground()
    this.#applied = seq
    this.#release()
  }

  /** Resolves once this node has applied change `seq`, or after CATCH_UP_MS (the reload after the subscriber's return will have it). */
  async #caughtUp (seq: number): Promise<void> {
    if (this.#applied >= seq || this.#subscriber === undefined) return
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve) => {
      this.#waiting.set(seq, resolve)
      timer = setTimeout(() => {
        this.#waiting.delete(seq)
        resolve()
      }, CATCH_UP_MS)
    })
    clearTimeout(timer)
  }

  #release (): void {
    for (const [seq, release] of this.#waiting) {
      if (seq > this.#applied) continue
      this.#waiting.delete(seq)
      release()
    }
  }

  #reloadInBackground (): void {
    // the subscription is active again once a SUBSCRIBE of ours is answered after ioredis' own
    const subscriber = this.#subscriber
    if (subscriber === undefined) return
    subscriber.subscribe(this.#channel).then(async () => { await this.#reload() }).catch(this.#onError)
  }

  /**
   * Reads the sequence number, then every client's subscriptions, into a new
   * trie; the changes heard meanwhile that are numbered after the sequence
   * read are applied on top, in order (a write the scan saw is applied
   * again, to the same effect).
   */
  async #reload (): Promise<void> {
    await this.#loads.run(async () => {
      const heard: Array<[number, Change]> = []
      this.#heard = heard
      try {
        const seq = Number(await this.#client.get(SUBSCRIPTIONS_SEQ_KEY) ?? 0)
        const trie = new QlobberSub(TRIE_OPTIONS)
        let cursor = '0'
        do {
          const [next, clientIds] = await this.#client.sscan(CLIENTS_KEY, cursor, 'COUNT', LOAD_CHUNK)
          cursor = next
          const pipeline = this.#client.pipeline()
          for (const clientId of clientIds) pipeline.hgetallBuffer(clientSubscriptionsKey(clientId))
          const replies = (await pipeline.exec()) ?? []
          clientIds.forEach((clientId, i) => {
            const [err, stored] = replies[i] ?? [null, {}]
            if (err !== null) throw err
            for (const [topic, value] of Object.entries(stored as Record<string, Buffer>)) add(trie, clientId, decode(topic, value))
          })
        } while (cursor !== '0')
        let applied = seq
        for (const [number, change] of heard) {
          if (number <= seq) continue
          apply(trie, change)
          applied = Math.max(applied, number)
        }
        this.#trie = trie
        this.#applied = applied
      } finally {
        this.#heard = undefined
      }
      this.#release()
    })
  }
}

/** A stored subscription: msgpack of the subscription, or (aedes-persistence-redis 8) its QoS as one digit. */
function decode (topic: string, value: Buffer): Subscription {
  if (value.length === 1) return { topic, qos: Number(value.toString()) }
  return msgpack.decode(value) as Subscription
}

/** A filter with a wildcard level: only a trie finds what it matches. */
function isWildcard (filter: string): boolean {
  return filter.includes('+') || filter.includes('#')
}

function add (trie: QlobberSub, clientId: string, sub: Subscription): void {
  // exact filters are looked up in Redis (exactSubscribersKey)
  if (!isWildcard(sub.topic)) return
  // a QoS 0 subscription queues nothing, and replaces one of higher QoS (aedes-persistence's semantics)
  if (sub.qos > 0) trie.add(sub.topic, { ...sub, clientId })
  else trie.remove(sub.topic, { clientId, topic: sub.topic })
}

function apply (trie: QlobberSub, change: Change): void {
  for (const sub of change.add ?? []) add(trie, change.c, sub)
  for (const topic of change.rm ?? []) if (isWildcard(topic)) trie.remove(topic, { clientId: change.c, topic })
}
