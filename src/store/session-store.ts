import AsyncLevelPersistence, { type PersistedPacket, type StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'
import msgpack from 'msgpack-lite'
import { Readable } from 'node:stream'
import { groupCommitTarget } from './batch-target.js'
import { FreshQueue } from './fresh-queue.js'
import { GroupCommit } from './group-commit.js'
import { InFlightMessages } from './in-flight.js'
import { OfflineSubscriptions } from './offline-subscriptions.js'
import { RetainedMessages, type RetainedLimits } from './retained-messages.js'
import { QueueBound } from './queue-bound.js'
import { QueueWrites } from './queue-writes.js'
import { createSessionPolicy, type SessionPolicy } from './session-policy.js'
import type { SessionDatabase, SessionStoreOptions } from './session-store-options.js'
import { SessionIndex } from './session-index.js'
import type { QueueLimitHandlers, SessionState, SessionStorage } from './session-storage.js'
import { outgoingIdPrefix, outgoingPrefix, prefixRange, SUBSCRIPTIONS_PREFIX } from './session-keys.js'

export type { PersistedPacket, StoredSubscription }
export type { RoutingHook, SessionPolicy, SubscriptionGuard } from './session-policy.js'
export type { SessionState, SessionStorage } from './session-storage.js'
export { createSessionPolicy } from './session-policy.js'
export type { SessionDatabase, SessionStoreOptions } from './session-store-options.js'

/**
 * The aedes session store (aedes-persistence-level) with the changes Herald needs:
 *
 * - aedes 1.2 stores a SUBSCRIBE packet's whole subscription list for
 *   clean=false clients, denied filters included, and would restore them on
 *   the next CONNECT. `addSubscriptions` drops every filter the guard refuses.
 * - aedes 1.2 writes PUBACK before the QoS1 message reaches the store. The
 *   broker runs the publish first and waits for `safeToAck` (broker/hooks.ts;
 *   AckGate, ack-gate.ts, in QueueWrites, queue-writes.ts).
 * - A routing hook sees each QoS>0 message with the offline subscriptions it
 *   matched and decides which of them queue it.
 * - The queue writes of QoS 1 delivery (enqueue, in flight, acknowledged) are
 *   written here, in the library's key layout, through one group commit on
 *   the root database: the message is encoded once for all its subscribers,
 *   and neither an in-flight update nor a PUBACK reads before writing
 *   (InFlightMemory, in-flight.ts). The library does one put per subscriber
 *   and a read before each update and clear, which made a QoS 1 fan-out 13
 *   times slower than aedes in memory.
 * - A message for several subscribers is first one record of the message
 *   and its recipients (FreshMessage); only those that have not acknowledged
 *   it after the hold get their queue entry, so a fan-out to connected
 *   devices costs two writes per message instead of two per delivery. When
 *   all its recipients are connected and its publisher waits, even the
 *   record waits (ackWaitMs) for their acknowledgements, and usually is
 *   never written (FreshQueue, fresh-queue.ts).
 * - Which clients have subscriptions, a will or possibly queued messages is
 *   known in memory (SessionIndex), so a CONNECT without any reads nothing.
 * - Only the enqueue is waited for (it is what makes a PUBACK to the
 *   publisher safe). In-flight updates and PUBACK clears are written behind,
 *   held back up to a second so that a PUBACK in that time cancels the in-flight
 *   writes (and their encoding): lost in a crash, they cost a resend under a
 *   new message id or a duplicate, both allowed at QoS 1; aedes no longer
 *   waits for LevelDB before writing a message to a subscriber. Reads of the
 *   queue, and shutdown, wait until those writes have landed.
 *
 * This class is the facade aedes sees: it composes the modules that hold
 * each of these concerns, and its collaborators are given at construction.
 * It is the LevelDB implementation of SessionStorage (session-storage.ts);
 * cluster mode uses RedisSessionStore (redis/session-store.ts).
 */
export class SessionStore extends AsyncLevelPersistence implements SessionStorage {
  /** the broker's decisions, given at construction and filled in by the wiring (session-policy.ts) */
  readonly policy: SessionPolicy
  readonly #db: SessionDatabase
  readonly #commit: GroupCommit
  /** the queue writes of a QoS>0 message, and the gate its publisher's PUBACK waits at */
  readonly #queue: QueueWrites
  /** messages for several recipients whose queue entries are not written yet */
  readonly #fresh: FreshQueue
  /** what this process put in flight, and its writes behind */
  readonly #inFlight: InFlightMessages
  /** which clients have stored subscriptions or a will: spares CONNECT the reads when they have none */
  readonly #index = new SessionIndex()
  /** the stored subscriptions that queue messages, by topic (replaces the library's trie: see OfflineSubscriptions) */
  readonly #offline = new OfflineSubscriptions()
  /** `limits.maxQueuedMessagesPerSession`, once limitQueues() is called */
  #bound: QueueBound | undefined
  /** retained messages, indexed by topic in memory (replaces the library's scan of every one on each SUBSCRIBE) */
  readonly #retained: RetainedMessages

  constructor (db: SessionDatabase, { policy = createSessionPolicy(), onWriteBehindError = () => {}, holdMs = 1000, ackWaitMs = 20 }: SessionStoreOptions = {}) {
    super(db)
    this.policy = policy
    this.#db = db
    this.#commit = new GroupCommit(groupCommitTarget(db.db), { holdMs, onHeldError: onWriteBehindError })
    this.#inFlight = new InFlightMessages({ db, commit: this.#commit })
    this.#fresh = new FreshQueue({ db, commit: this.#commit, holdMs, ackWaitMs, onDropped: (clientId) => this.#bound?.removed(clientId) })
    this.#retained = new RetainedMessages(db)
    this.#queue = new QueueWrites({ db, commit: this.#commit, fresh: this.#fresh, index: this.#index, ackWaitMs, isConnected: (clientId) => this.policy.isConnected(clientId), bound: () => this.#bound })
  }

  /**
   * Removes everything stored for a client id: subscriptions, queued and
   * in-flight messages, will. The queue key prefixes are aedes-persistence-level
   * 9's layout (asyncPersistence.js `outgoingByClientKey` and friends);
   * test/store/session-store.test.ts fails if an upgrade changes them.
   */
  async deleteSession (clientId: string): Promise<void> {
    await this.cleanSubscriptions({ id: clientId })
    await this.deleteQueue(clientId)
  }

  /** Removes a client id's queued and in-flight messages and its will, and keeps its subscriptions (an installation's, when its session expires). */
  async deleteQueue (clientId: string): Promise<void> {
    const client = { id: clientId }
    await this.cleanIncoming(client)
    await this.delWill(client)
    // a write behind landing after the clear would bring an entry back
    await this.#settled()
    this.#index.forgetQueue(clientId)
    this.#inFlight.deleted(clientId)
    this.#bound?.reset(clientId)
    for (const prefix of [outgoingPrefix(clientId), outgoingIdPrefix(clientId)]) await this.#db.clear(prefixRange(prefix))
  }

  /**
   * Bounds every session's queue to its newest `max` messages
   * (`limits.maxQueuedMessagesPerSession`; store/queue-bound.ts says how and
   * why). Call once, after setup and before clients connect: it counts the
   * queues on disk and trims those over the bound.
   */
  async limitQueues (max: number, { onDropped, onError }: QueueLimitHandlers): Promise<void> {
    const db = this.#db
    this.#bound = new QueueBound({
      max,
      db,
      remove: async (keys) => await this.#commit.write(keys.map((key) => ({ type: 'del', key: db.prefixKey(key, 'utf8') }))),
      isConnected: (clientId) => this.policy.isConnected(clientId),
      onDropped,
      onError,
    })
    await this.#bound.load()
  }

  /** What is stored for a client id (session expiry asks); answered from the index, asynchronous for the sake of the Redis store. */
  async sessionState (clientId: string): Promise<SessionState> {
    return { subscriptions: this.#index.hasFilters(clientId), will: this.#index.hasWill(clientId), queue: this.#index.queueMark(clientId) !== undefined }
  }

  /** Every client id with stored subscriptions, a will or possibly queued messages. */
  async sessionClientIds (): Promise<Set<string>> {
    return this.#index.clientIds()
  }

  /** Resolves once every write asked for so far, written-behind ones included, is in LevelDB; before the database closes. */
  async flush (): Promise<void> {
    await this.#bound?.idle()
    await this.#settled()
  }

  /** The bounds on retained messages (`limits.maxRetained*`); the defaults of config/default.json until called. */
  limitRetained (limits: RetainedLimits): void {
    this.#retained.setLimits(limits)
  }

  /**
   * Whether a retained PUBLISH on `topic` may be stored now: false for a new
   * topic beyond a retained bound (storeRetained would refuse it with
   * TOO_MANY_RETAINED); an empty payload (a delete) always may.
   */
  mayRetain (topic: string, payloadLength: number): boolean {
    return this.#retained.refusal(topic, payloadLength) === undefined
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

  override async setup (broker: unknown): Promise<void> {
    await super.setup(broker)
    await this.#fresh.recover()
    await this.#index.load(this.#db)
    await this.#retained.load()
    for await (const [, value] of this.#db.iterator(prefixRange(SUBSCRIPTIONS_PREFIX))) {
      const sub = msgpack.decode(value) as Partial<StoredSubscription>
      if (typeof sub.clientId !== 'string' || typeof sub.topic !== 'string' || typeof sub.qos !== 'number') continue
      this.#index.addFilters(sub.clientId, [sub.topic])
      this.#offline.add(sub.clientId, sub.topic, sub.qos)
    }
  }

  override async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    const allowed = subs.filter((sub) => this.policy.subscriptionGuard(client.id, sub.topic))
    if (allowed.length === 0) return
    this.#index.addFilters(client.id, allowed.map((sub) => sub.topic))
    await super.addSubscriptions(client, allowed)
    for (const sub of allowed) this.#offline.add(client.id, sub.topic, sub.qos)
  }

  override async removeSubscriptions (client: { id: string }, topics: string[]): Promise<void> {
    await super.removeSubscriptions(client, topics)
    this.#index.removeFilters(client.id, topics)
    for (const topic of topics) this.#offline.remove(client.id, topic)
  }

  override async subscriptionsByTopic (topic: string): Promise<StoredSubscription[]> {
    return this.#offline.match(topic)
  }

  override async subscriptionsByClient (client: { id: string }): Promise<Array<{ topic: string, qos: number }>> {
    if (!this.#index.hasFilters(client.id)) return []
    return await super.subscriptionsByClient(client)
  }

  override async putWill (client: { id: string }, packet: object): Promise<void> {
    this.#index.setWill(client.id, true)
    await super.putWill(client, packet)
  }

  override async getWill (client: { id: string }): Promise<unknown> {
    if (!this.#index.hasWill(client.id)) return undefined
    return await super.getWill(client)
  }

  override async delWill (client: { id: string }): Promise<unknown> {
    if (!this.#index.hasWill(client.id)) return undefined
    const will = await super.delWill(client)
    this.#index.setWill(client.id, false)
    return will
  }

  /**
   * Announces a QoS 1 publish (by its brokerId and brokerCounter) whose
   * publisher's PUBACK will wait for safeToAck(): when all its recipients are
   * connected, the enqueue then writes nothing yet, the message goes out at
   * once, and the record is written only if they have not all acknowledged
   * it within ackWaitMs.
   */
  expectAcknowledgement (packet: { brokerId: string, brokerCounter: number }): void {
    this.#queue.expect(packet)
  }

  /**
   * What the publisher of an announced publish waits for before its PUBACK:
   * the message in LevelDB, or every recipient's acknowledgement, whichever
   * comes first; undefined when there is nothing left to wait for. Call it
   * once aedes' publish is done, whether or not it failed.
   */
  safeToAck (packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined {
    return this.#queue.release(packet)
  }

  override async outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void> {
    const routing = this.policy.routing
    const routed = routing === undefined || subs.length === 0 ? subs : routing(subs, packet)
    // nearly always answered at once: no await (a microtask per message) then
    const queued = routed instanceof Promise ? await routed : routed
    if (queued.length === 0) return
    await this.#queue.enqueueRouted(queued, packet)
  }

  override async outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void> {
    await this.#queue.enqueue([sub], packet)
  }

  /** Resolves once every write asked for so far is in LevelDB, fresh messages' queue entries and writes behind included. */
  async #settled (): Promise<void> {
    this.#fresh.settle(Infinity)
    await this.#commit.settled()
  }

  /**
   * The client's queue, after the writes behind have landed; no read at all
   * for a client known to have none. That one is an empty array, not a
   * stream: aedes only hands the queue to stream.pipeline() (CONNECT's
   * emptyQueue), which takes any iterable, and a Readable built for nothing
   * was ~20 µs of every CONNECT.
   */
  override outgoingStream (client: { id: string }): NodeJS.ReadableStream & AsyncIterable<PersistedPacket> {
    const index = this.#index
    const mark = index.queueMark(client.id)
    if (mark === undefined) return NOTHING_QUEUED
    const settled = this.#settled()
    const stored = super.outgoingStream.bind(this)
    const bound = this.#bound
    return Readable.from((async function * () {
      await settled
      // the newest limits.maxQueuedMessagesPerSession of it, and no more
      await bound?.reconcile(client.id)
      let found = 0
      for await (const packet of stored(client)) {
        found++
        yield packet
      }
      if (found === 0) index.queueFoundEmpty(client.id, mark)
    })())
  }

  /**
   * A message goes in flight under a message id. The library reads the queue
   * entry first to delete an older id entry of the same message; aedes 1.2
   * resends a queued message under the id it already had (QoSPacket), so
   * there is none, and the queue entry exists: it was written before the
   * message was emitted, or the message was read from the queue.
   */
  override async outgoingUpdate (client: { id: string }, packet: PersistedPacket): Promise<void> {
    // a PUBREL (QoS 2) carries no broker data; the library looks it up
    const { messageId } = packet
    if (packet.brokerId === undefined || messageId === undefined) {
      await this.#settled()
      await super.outgoingUpdate(client, packet)
      return
    }
    this.#inFlight.sent(client.id, packet, messageId, this.#fresh.inFlight(client.id, packet))
  }

  /** PUBACK: the message leaves the queue. Returns where it was (aedes passes it to its 'ack' event). */
  override async outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    const known = this.#inFlight.get(client.id, packet.messageId)
    if (known === undefined) {
      // nothing stored for the client, nor about to be: a clean session's PUBACK (aedes keeps its
      // messages in no store, [MQTT-3.1.2-6]) waited here for every pending write and read LevelDB
      if (this.#index.queueMark(client.id) === undefined) return undefined
      // not put in flight by this process (a restart since): the library looks the id up
      await this.#settled()
      const cleared = await super.outgoingClearMessageId(client, packet)
      if (cleared !== undefined) this.#bound?.removed(client.id)
      return cleared
    }
    this.#bound?.removed(client.id)
    this.#inFlight.acknowledged(client.id, known, this.#fresh.acknowledged(client.id, known))
    return known
  }
}

const NOTHING_QUEUED = Object.freeze([]) as unknown as NodeJS.ReadableStream & AsyncIterable<PersistedPacket>
