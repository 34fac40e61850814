import AsyncRedisPersistence from 'aedes-persistence-redis/asyncPersistence.js'
import type { Redis } from 'ioredis'
import type { RetainedLimits } from '../retained-messages.js'
import { createSessionPolicy, type SessionPolicy } from '../session-policy.js'
import type { PersistedPacket, QueueLimitHandlers, SessionState, SessionStorage, StoredSubscription } from '../session-storage.js'
import type { RedisConnection } from './connection.js'
import { RedisIncoming } from './incoming.js'
import { RedisRetained } from './retained.js'
import { CLIENTS_KEY, QUEUES_KEY, RETAINED_CHANNEL, SESSIONS_PREFIX, WILL_CLIENTS_KEY } from './session-keys.js'
import { RedisQueues } from './session-queues.js'
import { RedisWills } from './wills.js'

export interface RedisSessionStoreOptions {
  /** the broker's decisions the store consults (session-policy.ts), filled in by the wiring */
  readonly policy?: SessionPolicy
  /** failures nobody waits for: reading the retained mirror again after the subscriber reconnected */
  readonly onError?: (err: unknown) => void
}

/** What aedes (or the abstract suite) gives setup(): its id, and the publish/subscribe the library's broadcast uses. */
interface SetupBroker { readonly id: string }

/** How long destroy() waits for the library to unsubscribe from the broker's mq (a closed mq may never answer). */
const UNSUBSCRIBE_WAIT_MS = 1000

/**
 * The session store of cluster mode: every node's sessions in one Redis,
 * behind the same SessionStorage seam as the LevelDB store.
 *
 * Built on aedes-persistence-redis 11 for the subscriptions: a hash per
 * client, and a trie of all stored subscriptions that every node keeps in
 * memory and in step through the broker's mq (its BroadcastPersistence
 * publishes `$SYS/sub/add` and `$SYS/sub/rm`, which mqemitter-redis carries
 * to every node; addSubscriptions resolves once its own broadcast came back).
 * The rest is Herald's, for Herald's semantics and for what the library does
 * not do atomically (redis/session-keys.ts has the layout):
 *
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
 * - Wills (redis/wills.ts) by broker id, as the library keeps them, so a dead
 *   node's wills are found by the others; incoming QoS 2 messages
 *   (redis/incoming.ts) with cleanIncoming, which the library lacks.
 *
 * What a PUBACK means on Redis: aedes' publish awaits outgoingEnqueueCombi
 * (and storeRetained), and this store resolves those once Redis has replied
 * to the write. A QoS 1 publish whose publish completed is therefore in
 * Redis' memory; the broker's PUBACK follows (broker/puback-order.ts), so
 * expectAcknowledgement has nothing to hold back and safeToAck nothing to
 * wait for. Whether it survives a crash of the Redis server is Redis'
 * persistence setting: with `appendonly yes` and `appendfsync always` Redis
 * replies after the write is fsynced; with `everysec` (Redis' default) up to
 * about a second of acknowledged writes can be lost when Redis itself dies;
 * without AOF, everything since the last snapshot. A Herald node may die at
 * any time without losing an acknowledged message. docs/clustering.md says so.
 *
 * Needs Redis 6.2 or later (LPOP with a count, LPOS), one instance or
 * Sentinel: the scripts build message keys from a prefix, which Redis
 * Cluster does not allow.
 */
export class RedisSessionStore extends AsyncRedisPersistence implements SessionStorage {
  readonly policy: SessionPolicy
  readonly #client: Redis
  readonly #conn: RedisConnection
  readonly #queues: RedisQueues
  readonly #retained: RedisRetained
  readonly #wills: RedisWills
  readonly #incoming: RedisIncoming
  #broker: SetupBroker | undefined
  #onDropped: QueueLimitHandlers['onDropped'] | undefined

  /**
   * Opens its own connection to the cluster's Redis (the library's destroy()
   * closes the one it is given), with `sessions:` after `cluster.keyPrefix`.
   * aedes calls setup(broker) when it starts listening: the store then loads
   * the subscriptions and retained topics and subscribes to the other nodes'
   * changes (the broker's mq must be the cluster's bus).
   */
  constructor (conn: RedisConnection, { policy = createSessionPolicy(), onError = () => {} }: RedisSessionStoreOptions = {}) {
    const client = conn.client.duplicate({ keyPrefix: `${conn.keyPrefix}${SESSIONS_PREFIX}` })
    // ioredis emits 'error' on every failed reconnect; commands fail on their own
    client.on('error', () => {})
    super({ conn: client })
    this.policy = policy
    this.#client = client
    this.#conn = conn
    this.#queues = new RedisQueues(client)
    this.#retained = new RedisRetained(client, conn.channel(RETAINED_CHANNEL), onError)
    this.#wills = new RedisWills(client)
    this.#incoming = new RedisIncoming(client)
  }

  /** This node's broker id: read at each use (the abstract suite changes it to play another broker). */
  get #brokerId (): string {
    if (this.#broker === undefined) throw new Error('the session store is not set up')
    return this.#broker.id
  }

  override async setup (broker: unknown): Promise<void> {
    this.#broker = broker as SetupBroker
    await super.setup(broker)
    await this.#retained.open(this.#conn.subscriber())
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
    const [subscriptions, will, queue] = await Promise.all([this.#client.sismember(CLIENTS_KEY, clientId), this.#wills.has(clientId), this.#queues.has(clientId)])
    return { subscriptions: subscriptions === 1, will, queue }
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

  override async storeRetained (packet: PersistedPacket): Promise<void> {
    await this.#retained.store(packet)
  }

  override createRetainedStreamCombi (patterns: string[]): NodeJS.ReadableStream {
    return this.#retained.stream(patterns)
  }

  override createRetainedStream (pattern: string): NodeJS.ReadableStream {
    return this.#retained.stream([pattern])
  }

  override async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    const allowed = subs.filter((sub) => this.policy.subscriptionGuard(client.id, sub.topic))
    if (allowed.length > 0) await super.addSubscriptions(client, allowed)
  }

  /** One subscription per client whose filters match, the one of highest QoS (the library gives one per filter). */
  override async subscriptionsByTopic (topic: string): Promise<StoredSubscription[]> {
    return onePerClient(await super.subscriptionsByTopic(topic))
  }

  override async outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void> {
    const recipients = onePerClient(subs)
    const routing = this.policy.routing
    const queued = routing === undefined || recipients.length === 0 ? recipients : await routing(recipients, packet)
    await this.#enqueue(queued.map((sub) => sub.clientId), packet)
  }

  override async outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void> {
    await this.#enqueue([sub.clientId], packet)
  }

  async #enqueue (clientIds: readonly string[], packet: PersistedPacket): Promise<void> {
    const unique = [...new Set(clientIds)]
    const dropped = await this.#queues.enqueue(unique, packet)
    unique.forEach((clientId, i) => { if ((dropped[i] ?? 0) > 0) this.#onDropped?.(clientId, dropped[i] ?? 0) })
  }

  override async outgoingUpdate (client: { id: string }, packet: PersistedPacket): Promise<void> {
    await this.#queues.update(client.id, packet)
  }

  override async outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    return await this.#queues.clear(client.id, packet?.messageId)
  }

  override outgoingStream (client: { id: string }): NodeJS.ReadableStream & AsyncIterable<PersistedPacket> {
    return this.#queues.stream(client.id)
  }

  override async incomingStorePacket (client: { id: string }, packet: object): Promise<void> {
    await this.#incoming.store(client.id, packet as { messageId?: number })
  }

  override async incomingGetPacket (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    return await this.#incoming.get(client.id, packet.messageId)
  }

  override async incomingDelPacket (client: { id: string }, packet: { messageId?: number }): Promise<void> {
    await this.#incoming.del(client.id, packet.messageId)
  }

  async cleanIncoming (client: { id: string }): Promise<void> {
    await this.#incoming.clean(client.id)
  }

  override async putWill (client: { id: string }, packet: object): Promise<void> {
    await this.#wills.put(this.#brokerId, client.id, packet as Record<string, unknown>)
  }

  override async getWill (client: { id: string }): Promise<unknown> {
    return await this.#wills.get(this.#brokerId, client.id)
  }

  /** `brokerId`: the broker that stored the will (aedes names it for a dead broker's will); this one otherwise. */
  override async delWill (client: { id: string, brokerId?: string }): Promise<unknown> {
    return await this.#wills.del(client.brokerId ?? this.#brokerId, client.id)
  }

  override streamWill (brokers?: Record<string, number>): NodeJS.ReadableStream {
    return this.#wills.stream(brokers)
  }

  /** Stops hearing the other nodes, then closes this store's connection. */
  override async destroy (): Promise<void> {
    await this.#retained.close()
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<void>((resolve) => { timer = setTimeout(resolve, UNSUBSCRIBE_WAIT_MS) })
    try {
      await Promise.race([super.destroy(), waited])
    } finally {
      clearTimeout(timer)
      this.#client.disconnect()
    }
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
