import type { Redis } from 'ioredis'
import { Readable } from 'node:stream'
import type { RetainedLimits } from '../retained-messages.js'
import { createSessionPolicy, type SessionPolicy } from '../session-policy.js'
import type { PersistedPacket, QueueLimitHandlers, SessionState, SessionStorage, StoredSubscription } from '../session-storage.js'
import type { RedisConnection } from './connection.js'
import { RedisIncoming } from './incoming.js'
import { RedisRetained } from './retained.js'
import { CLIENTS_KEY, QUEUES_KEY, RETAINED_CHANNEL, SUBSCRIPTIONS_CHANNEL, WILL_CLIENTS_KEY } from './session-keys.js'
import { RedisQueues } from './session-queues.js'
import { RedisSubscriptions } from './subscriptions.js'
import { RedisWills } from './wills.js'

export interface RedisSessionStoreOptions {
  /** the broker's decisions the store consults (session-policy.ts), filled in by the wiring */
  readonly policy?: SessionPolicy
  /** failures nobody waits for: reading a mirror (subscriptions, retained topics) again after its subscriber reconnected */
  readonly onError?: (err: unknown) => void
}

/** What aedes (or the abstract suite) gives setup(): its id is the broker id wills are stored under. */
interface SetupBroker { readonly id: string }

/**
 * The session store of cluster mode: every node's sessions in one Redis,
 * behind the same SessionStorage seam as the LevelDB store, checked by
 * aedes-persistence's abstract suite (test/contracts/session-store.test.ts).
 *
 * It keeps aedes-persistence-redis 11's key layout for subscriptions, wills,
 * incoming QoS 2 messages and the retained hash (redis/session-keys.ts), but
 * not its class, whose gaps are those a cluster falls into:
 * - its subscription trie follows the other nodes only by broadcasts on the
 *   MQTT bus, lost while a node's bus subscriber reconnects, and never
 *   reloaded: that node then stops queueing what it publishes for the
 *   subscription, and an acknowledged message is lost for an offline device
 *   (redis/subscriptions.ts numbers the changes and reloads instead);
 * - its queue writes are several commands (a count, a list per recipient)
 *   with no bound, and its PUBACK looks the message up in an in-process cache,
 *   so a PUBACK on another node (after a takeover) leaves the message queued
 *   for ever;
 * - it leaves will writes unawaited (an unhandled rejection when Redis is
 *   away), has no cleanIncoming, and scans every retained message (HSCAN) for
 *   each wildcard filter of a SUBSCRIBE.
 *
 * Herald's semantics, as on LevelDB:
 * - Subscription guard: a filter the guard refuses (policy.subscriptionGuard)
 *   is never stored.
 * - Routing hook: the relay sees each QoS>0 message with the offline
 *   subscriptions it matched (one per client, at the highest QoS of its
 *   filters: [MQTT-3.3.5-1]) and decides which of them queue it.
 * - Queues (redis/session-queues.ts): one Lua script per enqueue, in-flight
 *   update or acknowledgement, so `limits.maxQueuedMessagesPerSession` (the
 *   newest N stay) is counted and cut atomically in Redis, and message ids in
 *   flight are in Redis too: a PUBACK is understood by any node.
 * - Retained messages (redis/retained.ts): the bounds counted in Redis and
 *   checked by the write itself, so they hold across the cluster; each node
 *   mirrors the retained topics so a SUBSCRIBE reads only what it matches and
 *   mayRetain answers synchronously.
 * - Wills (redis/wills.ts) by broker id, so a dead node's wills are found by
 *   the others (aedes' streamWill, given the brokers it hears heartbeats from).
 *
 * What a PUBACK means on Redis: aedes' publish awaits outgoingEnqueueCombi
 * (and storeRetained), and this store resolves those once Redis has answered
 * the write. A QoS 1 message whose publish completed is therefore in Redis'
 * memory when the broker sends the PUBACK (broker/puback-order.ts), so
 * expectAcknowledgement has nothing to hold back and safeToAck nothing to
 * wait for (the LevelDB store's wait for the recipients' acknowledgements,
 * ackWaitMs, does not apply: every such message is written). A Herald node
 * may die at any time without losing an acknowledged message. Whether it
 * survives the Redis server dying is Redis' persistence setting: with
 * `appendonly yes` and `appendfsync always` Redis fsyncs the AOF before it
 * answers; with `appendfsync everysec` about the last second of
 * acknowledged writes may be lost; without AOF, everything since the last
 * snapshot. docs/clustering.md says so.
 *
 * Needs Redis 6.2 or later (LPOP with a count, LPOS), one instance or
 * Sentinel: the scripts build message keys from a prefix, which Redis
 * Cluster does not allow.
 */
export class RedisSessionStore implements SessionStorage {
  readonly policy: SessionPolicy
  readonly #client: Redis
  readonly #conn: RedisConnection
  readonly #subscriptions: RedisSubscriptions
  readonly #queues: RedisQueues
  readonly #retained: RedisRetained
  readonly #wills: RedisWills
  readonly #incoming: RedisIncoming
  #broker: SetupBroker | undefined
  #onDropped: QueueLimitHandlers['onDropped'] | undefined
  #destroyed = false

  /**
   * Uses the connection's client (keys under `sessions:`, session-keys.ts)
   * and, from setup() on, one subscriber connection of it: conn.close()
   * closes both. aedes calls setup(broker) when it starts listening: the
   * store then subscribes to the other nodes' changes and loads the
   * subscriptions and retained topics.
   */
  constructor (conn: RedisConnection, { policy = createSessionPolicy(), onError = () => {} }: RedisSessionStoreOptions = {}) {
    const client = conn.client
    this.policy = policy
    this.#client = client
    this.#conn = conn
    this.#subscriptions = new RedisSubscriptions(client, conn.channel(SUBSCRIPTIONS_CHANNEL), onError)
    this.#queues = new RedisQueues(client)
    this.#retained = new RedisRetained(client, conn.channel(RETAINED_CHANNEL), onError)
    this.#wills = new RedisWills(client)
    this.#incoming = new RedisIncoming(client)
  }

  /** The broker given to setup() (the abstract suite reads and changes its id). */
  get broker (): unknown {
    return this.#broker
  }

  /** This node's broker id: read at each use. */
  get #brokerId (): string {
    if (this.#broker === undefined) throw new Error('the session store is not set up')
    return this.#broker.id
  }

  async setup (broker: unknown): Promise<void> {
    this.#broker = broker as SetupBroker
    // one subscriber connection for both mirrors' channels
    const subscriber = this.#conn.subscriber()
    await this.#subscriptions.open(subscriber)
    await this.#retained.open(subscriber)
  }

  async deleteSession (clientId: string): Promise<void> {
    await this.cleanSubscriptions({ id: clientId })
    await this.deleteQueue(clientId)
  }

  async deleteQueue (clientId: string): Promise<void> {
    await this.#incoming.clean(clientId)
    await this.#wills.delAll(clientId)
    await this.#queues.delete(clientId)
  }

  async limitQueues (max: number, { onDropped }: QueueLimitHandlers): Promise<void> {
    this.#queues.max = max
    this.#onDropped = onDropped
    await this.#queues.trimAll(onDropped)
  }

  async sessionState (clientId: string): Promise<SessionState> {
    const [subscriptions, will, queue] = await Promise.all([this.#subscriptions.has(clientId), this.#wills.has(clientId), this.#queues.has(clientId)])
    return { subscriptions, will, queue }
  }

  async sessionClientIds (): Promise<Set<string>> {
    return new Set(await this.#client.sunion(CLIENTS_KEY, QUEUES_KEY, WILL_CLIENTS_KEY))
  }

  /** Every write is done when its caller's promise resolves: nothing is held back. */
  async flush (): Promise<void> {}

  limitRetained (limits: RetainedLimits): void {
    this.#retained.setLimits(limits)
  }

  mayRetain (topic: string, payloadLength: number): boolean {
    return this.#retained.refusal(topic, payloadLength) === undefined
  }

  /** Nothing to hold back: a publish is done once its enqueue is in Redis (see the class comment). */
  expectAcknowledgement (_packet: { brokerId: string, brokerCounter: number }): void {}

  safeToAck (_packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined {
    return undefined
  }

  async storeRetained (packet: PersistedPacket): Promise<void> {
    await this.#retained.store(packet)
  }

  createRetainedStreamCombi (patterns: string[]): NodeJS.ReadableStream {
    return this.#retained.stream(patterns)
  }

  createRetainedStream (pattern: string): NodeJS.ReadableStream {
    return this.#retained.stream([pattern])
  }

  async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    await this.#subscriptions.add(client.id, subs.filter((sub) => this.policy.subscriptionGuard(client.id, sub.topic)))
  }

  async removeSubscriptions (client: { id: string }, topics: string[]): Promise<void> {
    await this.#subscriptions.remove(client.id, topics)
  }

  async subscriptionsByClient (client: { id: string }): Promise<Array<{ topic: string, qos: number }>> {
    return await this.#subscriptions.byClient(client.id)
  }

  async cleanSubscriptions (client: { id: string }): Promise<void> {
    const subs = await this.#subscriptions.byClient(client.id)
    await this.#subscriptions.remove(client.id, subs.map((sub) => sub.topic))
  }

  /** One subscription per client whose filters match, the one of highest QoS (the library gives one per filter). */
  async subscriptionsByTopic (topic: string): Promise<StoredSubscription[]> {
    return onePerClient(await this.#subscriptions.match(topic))
  }

  /** aedes-persistence's count of the QoS > 0 subscriptions this node knows and of the clients with any (aedes 1.2 does not ask). */
  async countOffline (): Promise<{ subsCount: number, clientsCount: number }> {
    const [subsCount, clientsCount] = await Promise.all([this.#subscriptions.count(), this.#subscriptions.clientCount()])
    return { subsCount, clientsCount }
  }

  /** aedes-persistence's clients subscribed at QoS > 0 to exactly this filter (aedes 1.2 does not ask). */
  getClientList (filter: string): NodeJS.ReadableStream {
    const subscriptions = this.#subscriptions
    return Readable.from((async function * () { yield * await subscriptions.clientsOf(filter) })())
  }

  async outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void> {
    const recipients = onePerClient(subs)
    const routing = this.policy.routing
    const queued = routing === undefined || recipients.length === 0 ? recipients : await routing(recipients, packet)
    await this.#enqueue(queued.map((sub) => sub.clientId), packet)
  }

  async outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void> {
    await this.#enqueue([sub.clientId], packet)
  }

  async #enqueue (clientIds: readonly string[], packet: PersistedPacket): Promise<void> {
    const unique = [...new Set(clientIds)]
    const dropped = await this.#queues.enqueue(unique, packet)
    unique.forEach((clientId, i) => { if ((dropped[i] ?? 0) > 0) this.#onDropped?.(clientId, dropped[i] ?? 0) })
  }

  async outgoingUpdate (client: { id: string }, packet: PersistedPacket): Promise<void> {
    await this.#queues.update(client.id, packet)
  }

  async outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    return await this.#queues.clear(client.id, packet?.messageId)
  }

  outgoingStream (client: { id: string }): NodeJS.ReadableStream & AsyncIterable<PersistedPacket> {
    return this.#queues.stream(client.id)
  }

  async incomingStorePacket (client: { id: string }, packet: object): Promise<void> {
    await this.#incoming.store(client.id, packet as { messageId?: number })
  }

  async incomingGetPacket (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    return await this.#incoming.get(client.id, packet.messageId)
  }

  async incomingDelPacket (client: { id: string }, packet: { messageId?: number }): Promise<void> {
    await this.#incoming.del(client.id, packet.messageId)
  }

  async cleanIncoming (client: { id: string }): Promise<void> {
    await this.#incoming.clean(client.id)
  }

  async putWill (client: { id: string }, packet: object): Promise<void> {
    await this.#wills.put(this.#brokerId, client.id, packet as Record<string, unknown>)
  }

  async getWill (client: { id: string }): Promise<unknown> {
    return await this.#wills.get(this.#brokerId, client.id)
  }

  /** `brokerId`: the broker that stored the will (aedes names it for a dead broker's will); this one otherwise. */
  async delWill (client: { id: string, brokerId?: string }): Promise<unknown> {
    return await this.#wills.del(client.brokerId ?? this.#brokerId, client.id)
  }

  /**
   * The wills of brokers missing from `brokers` (aedes passes those it heard a
   * heartbeat from lately). When this node is missing from it too, it has
   * not heard even itself: its bus was away (Redis lost), every node looks
   * dead from here, and a live client's will would be taken. It takes none
   * until it hears heartbeats again.
   */
  streamWill (brokers?: Record<string, number>): NodeJS.ReadableStream {
    if (brokers !== undefined && this.#broker !== undefined && brokers[this.#broker.id] === undefined) return Readable.from([])
    return this.#wills.stream(brokers)
  }

  /** Stops hearing the other nodes; the RedisConnection (and its subscriber) is closed by its owner. */
  async destroy (): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    await Promise.all([this.#subscriptions.close(), this.#retained.close()])
  }
}

/** The session store of a cluster node (RedisSessionStore's constructor says what it opens). */
export function openRedisSessionStore (conn: RedisConnection, options: RedisSessionStoreOptions = {}): RedisSessionStore {
  return new RedisSessionStore(conn, options)
}

/** One subscription per client, the one of highest QoS ([MQTT-3.3.5-1]): one queue entry per client. */
function onePerClient (subs: StoredSubscription[]): StoredSubscription[] {
  if (subs.length < 2) return subs
  const byClient = new Map<string, StoredSubscription>()
  for (const sub of subs) {
    const best = byClient.get(sub.clientId)
    if (best === undefined || sub.qos > best.qos) byClient.set(sub.clientId, sub)
  }
  return byClient.size === subs.length ? subs : [...byClient.values()]
}
