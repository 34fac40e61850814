import Packet from 'aedes-packet'
import AsyncLevelPersistence, { type PersistedPacket, type StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'
import msgpack from 'msgpack-lite'
import { Readable } from 'node:stream'
import { groupCommitTarget } from './batch-target.js'
import { decodeFreshRecord, encodeFreshRecord, FRESH_PREFIX, freshRecordKey, type FreshMessage } from './fresh-messages.js'
import { GroupCommit, type BatchOperation, type BatchTarget, type HeldOperation } from './group-commit.js'
import { OfflineSubscriptions } from './offline-subscriptions.js'
import { RetainedMessages, type RetainedDatabase, type RetainedLimits } from './retained-messages.js'
import { QueueBound } from './queue-bound.js'
import { SessionIndex, type KeyLister } from './session-index.js'
import { outgoingIdKey, outgoingIdPrefix, outgoingKey, outgoingPrefix, prefixRange, SUBSCRIPTIONS_PREFIX } from './session-keys.js'

/** Decides whether a subscription may be written into a client's persistent session. */
export type SubscriptionGuard = (clientId: string, topic: string) => boolean

export type { PersistedPacket, StoredSubscription }

/** The (sub)level the session store lives in. */
export interface SessionDatabase extends KeyLister, RetainedDatabase {
  clear (range: { gte: string, lt: string }): Promise<void>
  iterator (range: { gte: string, lt: string }): AsyncIterable<[string, Buffer]>
  /** abstract-level sublevel API: this key as the root database stores it */
  prefixKey (key: string, keyFormat: 'utf8'): string
  /** the root database */
  readonly db: BatchTarget
}

/** Where a message in flight to a client sits in its queue. */
interface InFlight {
  readonly brokerId: string
  readonly brokerCounter: number
  readonly messageId: number
  readonly topic: string
  /** its queue and message-id keys as the root database stores them, once they may be on disk */
  readonly keys?: { readonly queue: string, readonly id: string }
}

export interface SessionStoreOptions {
  /** hears about failed in-flight and acknowledgement writes, which no caller waits for */
  readonly onWriteBehindError?: (err: unknown) => void
  /**
   * How long a fresh message's recipients have to acknowledge it before their
   * queue entries are written, and how long writes behind are held back
   * (GroupCommit.writeHeld). 1 s by default.
   */
  readonly holdMs?: number
  /**
   * How long a message whose recipients are all connected waits for their
   * acknowledgements before its record is written anyway; its publisher's
   * PUBACK waits as long at most. 20 ms by default.
   */
  readonly ackWaitMs?: number
}

/** A QoS 1 publish whose publisher's PUBACK waits for safeToAck(). */
interface ExpectedAck {
  readonly brokerId: string
  /** set when the message's record waits for its recipients' acknowledgements */
  safe?: Promise<void>
}

/**
 * In-flight messages remembered so a PUBACK clears its queue entry without a
 * read. Entries of clients that left before acknowledging stay until the id is
 * reused; past this many, PUBACKs fall back to reading the index.
 */
const MAX_REMEMBERED_IN_FLIGHT = 100_000

/**
 * Sees every QoS>0 message on its way into offline queues, with the
 * persistent subscriptions it matched, and returns those that should queue
 * it (push-only installations keep no queue; the relay hooks in here).
 */
export type RoutingHook = (subs: StoredSubscription[], packet: PersistedPacket) => Promise<StoredSubscription[]>

/**
 * The aedes session store (aedes-persistence-level) with the changes Herald needs:
 *
 * - aedes 1.2 stores a SUBSCRIBE packet's whole subscription list for
 *   clean=false clients, denied filters included, and would restore them on
 *   the next CONNECT. `addSubscriptions` drops every filter the guard refuses.
 * - aedes 1.2 writes PUBACK before the QoS1 message reaches the store. The
 *   broker runs the publish first and waits for `safeToAck` (broker/hooks.ts).
 * - A routing hook sees each QoS>0 message with the offline subscriptions it
 *   matched and decides which of them queue it.
 * - The queue writes of QoS 1 delivery (enqueue, in flight, acknowledged) are
 *   written here, in the library's key layout, through one group commit on
 *   the root database: the message is encoded once for all its subscribers,
 *   and neither an in-flight update nor a PUBACK reads before writing. The
 *   library does one put per subscriber and a read before each update and
 *   clear, which made a QoS 1 fan-out 13 times slower than aedes in memory.
 * - A message for several subscribers is first one record of the message
 *   and its recipients (FreshMessage); only those that have not acknowledged
 *   it after the hold get their queue entry, so a fan-out to connected
 *   devices costs two writes per message instead of two per delivery. When
 *   all its recipients are connected and its publisher waits, even the
 *   record waits (ackWaitMs) for their acknowledgements, and usually is
 *   never written.
 * - Which clients have subscriptions, a will or possibly queued messages is
 *   known in memory (SessionIndex), so a CONNECT without any reads nothing.
 * - Only the enqueue is waited for (it is what makes a PUBACK to the
 *   publisher safe). In-flight updates and PUBACK clears are written behind,
 *   held back up to a second so that a PUBACK in that time cancels the in-flight
 *   writes (and their encoding): lost in a crash, they cost a resend under a
 *   new message id or a duplicate, both allowed at QoS 1; aedes no longer
 *   waits for LevelDB before writing a message to a subscriber. Reads of the
 *   queue, and shutdown, wait until those writes have landed.
 */
export class SessionStore extends AsyncLevelPersistence {
  #guard: SubscriptionGuard = () => true
  #routing: RoutingHook | undefined
  #isConnected: (clientId: string) => boolean = () => false
  /** brokerCounter → publishes whose publisher waits for safeToAck() (see #expectedOf) */
  readonly #expectedAcks = new Map<number, ExpectedAck>()

  readonly #db: SessionDatabase
  readonly #commit: GroupCommit
  /** client id → message id → the queue entry of that in-flight message */
  readonly #inFlight = new Map<string, Map<number, InFlight>>()
  #inFlightCount = 0
  /** which clients have stored subscriptions or a will: spares CONNECT the reads when they have none */
  readonly #index = new SessionIndex()
  /** the stored subscriptions that queue messages, by topic (replaces the library's trie: see OfflineSubscriptions) */
  readonly #offline = new OfflineSubscriptions()
  /** brokerCounter → messages whose queue entries are not written yet, oldest first (see #freshOf) */
  readonly #fresh = new Map<number, FreshMessage>()
  #freshTimer: NodeJS.Timeout | undefined
  readonly #holdMs: number
  /** brokerCounter → fresh messages whose record waits for acknowledgements, oldest first */
  readonly #unwritten = new Map<number, FreshMessage>()
  #unwrittenTimer: NodeJS.Timeout | undefined
  readonly #ackWaitMs: number
  /** `limits.maxQueuedMessagesPerSession`, once limitQueues() is called */
  #bound: QueueBound | undefined
  /** retained messages, indexed by topic in memory (replaces the library's scan of every one on each SUBSCRIBE) */
  readonly #retained: RetainedMessages

  constructor (db: SessionDatabase, { onWriteBehindError = () => {}, holdMs = 1000, ackWaitMs = 20 }: SessionStoreOptions = {}) {
    super(db)
    this.#db = db
    this.#holdMs = holdMs
    this.#ackWaitMs = ackWaitMs
    this.#commit = new GroupCommit(groupCommitTarget(db.db), { holdMs, onHeldError: onWriteBehindError })
    this.#retained = new RetainedMessages(db)
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
    this.#bound?.reset(clientId)
    for (const prefix of [outgoingPrefix(clientId), outgoingIdPrefix(clientId)]) await this.#db.clear(prefixRange(prefix))
  }

  /**
   * Bounds every session's queue to its newest `max` messages
   * (`limits.maxQueuedMessagesPerSession`; store/queue-bound.ts says how and
   * why). Call once, after setup and before clients connect: it counts the
   * queues on disk and trims those over the bound.
   */
  async limitQueues (max: number, { onDropped, onError }: { onDropped: (clientId: string, count: number) => void, onError: (err: unknown) => void }): Promise<void> {
    const db = this.#db
    this.#bound = new QueueBound({
      max,
      db,
      remove: async (keys) => await this.#commit.write(keys.map((key) => ({ type: 'del', key: db.prefixKey(key, 'utf8') }))),
      isConnected: (clientId) => this.#isConnected(clientId),
      onDropped,
      onError,
    })
    await this.#bound.load()
  }

  /** What is stored for a client id (session expiry asks). */
  sessionState (clientId: string): { readonly subscriptions: boolean, readonly will: boolean, readonly queue: boolean } {
    return { subscriptions: this.#index.hasFilters(clientId), will: this.#index.hasWill(clientId), queue: this.#index.queueMark(clientId) !== undefined }
  }

  /** Every client id with stored subscriptions, a will or possibly queued messages. */
  sessionClientIds (): Set<string> {
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

  setSubscriptionGuard (guard: SubscriptionGuard): void {
    this.#guard = guard
  }

  setRoutingHook (hook: RoutingHook): void {
    this.#routing = hook
  }

  /** Tells which client ids have a live connection, which may acknowledge a message soon. */
  setPresence (isConnected: (clientId: string) => boolean): void {
    this.#isConnected = isConnected
  }

  override async setup (broker: unknown): Promise<void> {
    await super.setup(broker)
    await this.#recoverFresh()
    await this.#index.load(this.#db)
    await this.#retained.load()
    for await (const [, value] of this.#db.iterator(prefixRange(SUBSCRIPTIONS_PREFIX))) {
      const sub = msgpack.decode(value) as Partial<StoredSubscription>
      if (typeof sub.clientId === 'string' && typeof sub.topic === 'string' && typeof sub.qos === 'number') this.#offline.add(sub.clientId, sub.topic, sub.qos)
    }
  }

  override async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    const allowed = subs.filter((sub) => this.#guard(client.id, sub.topic))
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
    this.#expectedAcks.set(packet.brokerCounter, { brokerId: packet.brokerId })
  }

  /**
   * What the publisher of an announced publish waits for before its PUBACK:
   * the message in LevelDB, or every recipient's acknowledgement, whichever
   * comes first; undefined when there is nothing left to wait for. Call it
   * once aedes' publish is done, whether or not it failed.
   */
  safeToAck (packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined {
    const expected = this.#expectedOf(packet)
    if (expected === undefined) return undefined
    this.#expectedAcks.delete(packet.brokerCounter)
    return expected.safe
  }

  /** The announced publish this packet is, if it is one (counters are per broker id). */
  #expectedOf (packet: { brokerId: string, brokerCounter: number }): ExpectedAck | undefined {
    const expected = this.#expectedAcks.get(packet.brokerCounter)
    return expected?.brokerId === packet.brokerId ? expected : undefined
  }

  override async outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void> {
    const queued = this.#routing === undefined || subs.length === 0 ? subs : await this.#routing(subs, packet)
    if (queued.length === 0) return
    const expected = this.#expectedOf(packet)
    if (expected !== undefined && this.#ackWaitMs > 0 && queued.every((sub) => this.#isConnected(sub.clientId))) {
      expected.safe = this.#awaitAcks(queued, packet)
      return
    }
    await this.#enqueue(queued, packet)
  }

  override async outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void> {
    await this.#enqueue([sub], packet)
  }

  /**
   * One encoding of the message, durable when this resolves: for one
   * recipient, its queue entry; for several, one record of the message and
   * its recipients, whose queue entries come later (FreshMessage).
   */
  async #enqueue (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    if (subs.length === 0) return
    this.#markQueued(subs)
    const only = subs.length === 1 ? subs[0] : undefined
    if (only !== undefined) {
      try {
        await this.#commit.write([this.#put(outgoingKey(only.clientId, packet.brokerId, packet.brokerCounter), encodeEntry(packet))])
      } catch (err) {
        this.#bound?.removed(only.clientId)
        throw err
      }
      return
    }
    const message = this.#addFresh(subs, packet)
    try {
      await this.#commit.write([this.#recordOf(message)])
    } catch (err) {
      this.#dropFresh(message)
      throw err
    }
  }

  /** A fresh message whose record waits until ackWaitMs for its recipients to acknowledge it; resolves when the publisher may get its PUBACK. */
  #awaitAcks (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    this.#markQueued(subs)
    const message = this.#addFresh(subs, packet)
    this.#unwritten.set(packet.brokerCounter, message)
    // not unref'd: a publisher waits for it, and nothing of the message is on disk yet
    this.#unwrittenTimer ??= setTimeout(() => this.#writeUnwrittenOnTimer(), this.#ackWaitMs)
    return new Promise<void>((resolve, reject) => { message.unwritten = { resolve, reject } })
  }

  #addFresh (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): FreshMessage {
    const recordKey = this.#db.prefixKey(freshRecordKey(packet.brokerId, packet.brokerCounter), 'utf8')
    const message: FreshMessage = { packet, value: undefined, recordKey, createdAt: Date.now(), waiting: new Map(subs.map((sub) => [sub.clientId, null])), unwritten: undefined }
    this.#fresh.set(packet.brokerCounter, message)
    this.#freshTimer ??= this.#freshTimerStart()
    return message
  }

  /** Not stored: the publisher gets no PUBACK, and no entry may appear later. */
  #dropFresh (message: FreshMessage): void {
    if (this.#freshOf(message.packet) === message) this.#fresh.delete(message.packet.brokerCounter)
    for (const clientId of message.waiting.keys()) this.#bound?.removed(clientId)
  }

  /** Before a message is written to these clients' queues (or its record to one of them): the index and the queue bound count it. */
  #markQueued (subs: ReadonlyArray<{ clientId: string }>): void {
    for (const sub of subs) {
      this.#index.markQueued(sub.clientId)
      this.#bound?.added(sub.clientId)
    }
  }

  /** The record of a fresh message, with the recipients that still wait for it. */
  #recordOf (message: FreshMessage): BatchOperation {
    return { type: 'put', key: message.recordKey, value: encodeFreshRecord(entryOf(message), [...message.waiting.keys()]) }
  }

  #writeUnwrittenOnTimer (): void {
    this.#unwrittenTimer = undefined
    this.#writeUnwritten(Date.now() - this.#ackWaitMs)
    if (this.#unwritten.size > 0) this.#unwrittenTimer = setTimeout(() => this.#writeUnwrittenOnTimer(), this.#ackWaitMs)
  }

  #stopUnwrittenTimerIfIdle (): void {
    if (this.#unwritten.size > 0) return
    clearTimeout(this.#unwrittenTimer)
    this.#unwrittenTimer = undefined
  }

  /** The records of messages created up to `createdBy` that are still waiting for acknowledgements go to LevelDB. */
  #writeUnwritten (createdBy: number): void {
    const messages: FreshMessage[] = []
    for (const [key, message] of this.#unwritten) {
      if (message.createdAt > createdBy) break
      this.#unwritten.delete(key)
      messages.push(message)
    }
    this.#stopUnwrittenTimerIfIdle()
    if (messages.length === 0) return
    const waiters = messages.map((message) => message.unwritten)
    for (const message of messages) message.unwritten = undefined
    this.#commit.write(messages.map((message) => this.#recordOf(message))).then(() => {
      for (const waiter of waiters) waiter?.resolve()
    }, (err: unknown) => {
      for (const message of messages) this.#dropFresh(message)
      for (const waiter of waiters) waiter?.reject(err)
    })
  }

  /** Resolves once every write asked for so far is in LevelDB, fresh messages' queue entries and writes behind included. */
  async #settled (): Promise<void> {
    this.#settleFresh(Infinity)
    await this.#commit.settled()
  }

  #settleFreshOnTimer (): void {
    this.#freshTimer = undefined
    this.#settleFresh(Date.now() - this.#holdMs)
    if (this.#fresh.size > 0) this.#freshTimer = this.#freshTimerStart()
  }

  /** unref'd: it never keeps a process alive (flush() settles what is left; a record survives anything else) */
  #freshTimerStart (): NodeJS.Timeout {
    return setTimeout(() => this.#settleFreshOnTimer(), this.#holdMs).unref()
  }

  /**
   * Fresh messages created up to `createdBy`: the queue entries of the
   * recipients that have not acknowledged yet (with the message id of those
   * it is in flight to), and the record's delete, all in one batch.
   */
  #settleFresh (createdBy: number): void {
    // their records are written first (their publishers wait for that); the deletes below replace them when both share a batch
    this.#writeUnwritten(createdBy)
    const operations: HeldOperation[] = []
    for (const [key, message] of this.#fresh) {
      if (message.createdAt > createdBy) break
      this.#fresh.delete(key)
      const { brokerId, brokerCounter } = message.packet
      for (const [clientId, inFlight] of message.waiting) {
        const queueKey = this.#db.prefixKey(outgoingKey(clientId, brokerId, brokerCounter), 'utf8')
        if (inFlight === null) {
          operations.push({ type: 'put', key: queueKey, value: entryOf(message) })
          continue
        }
        const value = msgpack.encode(inFlight)
        operations.push({ type: 'put', key: queueKey, value }, { type: 'put', key: this.#db.prefixKey(outgoingIdKey(clientId, inFlight.messageId as number), 'utf8'), value })
      }
      operations.push({ type: 'del', key: message.recordKey })
    }
    if (operations.length > 0) this.#commit.writeHeld(operations)
    if (this.#fresh.size === 0) {
      clearTimeout(this.#freshTimer)
      this.#freshTimer = undefined
    }
  }

  /** After a crash: the records of fresh messages become the queue entries of all their recipients. */
  async #recoverFresh (): Promise<void> {
    const operations: BatchOperation[] = []
    for await (const [key, record] of this.#db.iterator(prefixRange(FRESH_PREFIX))) {
      const decoded = decodeFreshRecord(record)
      const packet = decoded === undefined ? undefined : msgpack.decode(decoded.value) as Partial<PersistedPacket>
      if (decoded !== undefined && typeof packet?.brokerId === 'string' && typeof packet.brokerCounter === 'number') {
        for (const clientId of decoded.clientIds) operations.push(this.#put(outgoingKey(clientId, packet.brokerId, packet.brokerCounter), decoded.value))
      }
      operations.push({ type: 'del', key: this.#db.prefixKey(key, 'utf8') })
    }
    await this.#commit.write(operations)
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
    if (packet.brokerId === undefined || packet.messageId === undefined) {
      await this.#settled()
      await super.outgoingUpdate(client, packet)
      return
    }
    const { brokerId, brokerCounter, messageId, topic } = packet
    const fresh = this.#freshOf(packet)
    if (fresh?.waiting.has(client.id) === true) {
      // nothing of this delivery is on disk but the record: it is written only if not acknowledged in time
      fresh.waiting.set(client.id, packet)
      this.#remember(client.id, { brokerId, brokerCounter, messageId, topic })
      return
    }
    // encoded only if the message is still unacknowledged when the held writes go out
    // (aedes gives each delivery its own packet object, so it does not change meanwhile)
    let encoded: Buffer | undefined
    const value = (): Buffer => (encoded ??= msgpack.encode(packet))
    const keys = this.#inFlightKeys(client.id, { brokerId, brokerCounter, messageId })
    this.#commit.writeHeld([{ type: 'put', key: keys.id, value }, { type: 'put', key: keys.queue, value }])
    this.#remember(client.id, { brokerId, brokerCounter, messageId, topic, keys })
  }

  /** PUBACK: the message leaves the queue. Returns where it was (aedes passes it to its 'ack' event). */
  override async outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    const ofClient = this.#inFlight.get(client.id)
    const known = packet.messageId === undefined ? undefined : ofClient?.get(packet.messageId)
    if (known === undefined) {
      // not put in flight by this process (a restart since): the library looks the id up
      await this.#settled()
      const cleared = await super.outgoingClearMessageId(client, packet)
      if (cleared !== undefined) this.#bound?.removed(client.id)
      return cleared
    }
    this.#forget(client.id, ofClient, known.messageId)
    this.#bound?.removed(client.id)
    const fresh = this.#freshOf(known)
    if (fresh?.waiting.delete(client.id) === true) {
      // nothing was written for this recipient; the record goes once nobody waits for the message
      if (fresh.waiting.size === 0) {
        this.#fresh.delete(known.brokerCounter)
        if (fresh.unwritten === undefined) {
          this.#commit.writeHeld([{ type: 'del', key: fresh.recordKey }])
        } else {
          // acknowledged by all before its record was written: nothing is, and the publisher gets its PUBACK
          this.#unwritten.delete(known.brokerCounter)
          this.#stopUnwrittenTimerIfIdle()
          fresh.unwritten.resolve()
          fresh.unwritten = undefined
        }
      }
      return known
    }
    const { id: idKey, queue: queueKey } = known.keys ?? this.#inFlightKeys(client.id, known)
    // acknowledged before its in-flight entry was written: the entry is never written at all.
    // (Should an earlier batch have written it, for a resend, it stays as a stale index entry
    // until the id is used again; nothing reads the index but a PUBACK for that id.)
    // The queue entry's delete replaces its held in-flight put.
    this.#commit.writeHeld(this.#commit.withdraw(idKey) ? [{ type: 'del', key: queueKey }] : [{ type: 'del', key: idKey }, { type: 'del', key: queueKey }])
    return known
  }

  /** The fresh message this packet is, if it is one (counters are per broker id). */
  #freshOf (packet: { brokerId: string, brokerCounter: number }): FreshMessage | undefined {
    const fresh = this.#fresh.get(packet.brokerCounter)
    return fresh?.packet.brokerId === packet.brokerId ? fresh : undefined
  }

  #inFlightKeys (clientId: string, packet: { brokerId: string, brokerCounter: number, messageId: number }): { queue: string, id: string } {
    return {
      queue: this.#db.prefixKey(outgoingKey(clientId, packet.brokerId, packet.brokerCounter), 'utf8'),
      id: this.#db.prefixKey(outgoingIdKey(clientId, packet.messageId), 'utf8'),
    }
  }

  #put (key: string, value: Buffer): BatchOperation {
    return { type: 'put', key: this.#db.prefixKey(key, 'utf8'), value }
  }

  #remember (clientId: string, entry: InFlight): void {
    let ofClient = this.#inFlight.get(clientId)
    if (ofClient?.has(entry.messageId) === true) {
      ofClient.set(entry.messageId, entry)
      return
    }
    if (this.#inFlightCount >= MAX_REMEMBERED_IN_FLIGHT) return
    if (ofClient === undefined) this.#inFlight.set(clientId, ofClient = new Map())
    ofClient.set(entry.messageId, entry)
    this.#inFlightCount++
  }

  #forget (clientId: string, ofClient: Map<number, InFlight> | undefined, messageId: number): void {
    if (ofClient?.delete(messageId) !== true) return
    this.#inFlightCount--
    if (ofClient.size === 0) this.#inFlight.delete(clientId)
  }
}

const NOTHING_QUEUED = Object.freeze([]) as unknown as NodeJS.ReadableStream & AsyncIterable<PersistedPacket>

/** A queue entry's bytes: aedes-packet's fields, as aedes-persistence-level stores them. */
function encodeEntry (packet: PersistedPacket): Buffer {
  return msgpack.encode(new Packet(packet))
}

/** A fresh message's queue entry, encoded once, when something first needs it. */
function entryOf (message: FreshMessage): Buffer {
  return (message.value ??= encodeEntry(message.packet))
}
