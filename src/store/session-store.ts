import Packet from 'aedes-packet'
import AsyncLevelPersistence, { type PersistedPacket, type StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'
import msgpack from 'msgpack-lite'
import { Readable } from 'node:stream'
import { groupCommitTarget } from './batch-target.js'
import { GroupCommit, type BatchOperation, type BatchTarget } from './group-commit.js'
import { SessionIndex, type KeyLister } from './session-index.js'
import { outgoingIdKey, outgoingIdPrefix, outgoingKey, outgoingPrefix, prefixRange } from './session-keys.js'

/** Decides whether a subscription may be written into a client's persistent session. */
export type SubscriptionGuard = (clientId: string, topic: string) => boolean

export type { PersistedPacket, StoredSubscription }

/** The (sub)level the session store lives in. */
export interface SessionDatabase extends KeyLister {
  clear (range: { gte: string, lt: string }): Promise<void>
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
  /** its queue and message-id keys, as the root database stores them */
  readonly queueKey: string
  readonly idKey: string
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
 * - aedes 1.2 writes PUBACK before the QoS1 message reaches the store.
 *   `persistPublish` lets the broker store it first (see broker/hooks.ts).
 * - A routing hook sees each QoS>0 message with the offline subscriptions it
 *   matched and decides which of them queue it.
 * - The queue writes of QoS 1 delivery (enqueue, in flight, acknowledged) are
 *   written here, in the library's key layout, through one group commit on
 *   the root database: the message is encoded once for all its subscribers,
 *   and neither an in-flight update nor a PUBACK reads before writing. The
 *   library does one put per subscriber and a read before each update and
 *   clear, which made a QoS 1 fan-out 13 times slower than aedes in memory.
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
  /** brokerId:brokerCounter of packets stored by persistPublish that aedes has not written yet. */
  readonly #prePersisted = new Map<string, number>()

  readonly #db: SessionDatabase
  readonly #commit: GroupCommit
  /** `clientId \0 messageId` → the queue entry of that in-flight message */
  readonly #inFlight = new Map<string, InFlight>()
  /** which clients have stored subscriptions or a will: spares CONNECT the reads when they have none */
  readonly #index = new SessionIndex()

  /** `onWriteBehindError` hears about failed in-flight and acknowledgement writes, which no caller waits for. */
  constructor (db: SessionDatabase, onWriteBehindError: (err: unknown) => void = () => {}) {
    super(db)
    this.#db = db
    this.#commit = new GroupCommit(groupCommitTarget(db.db), { onHeldError: onWriteBehindError })
  }

  /**
   * Removes everything stored for a client id: subscriptions, queued and
   * in-flight messages, will. The queue key prefixes are aedes-persistence-level
   * 9's layout (asyncPersistence.js `outgoingByClientKey` and friends);
   * test/store/session-store.test.ts fails if an upgrade changes them.
   */
  async deleteSession (clientId: string): Promise<void> {
    const client = { id: clientId }
    await this.cleanSubscriptions(client)
    await this.cleanIncoming(client)
    await this.delWill(client)
    // a write behind landing after the clear would bring an entry back
    await this.#commit.settled()
    this.#index.forgetQueue(clientId)
    for (const prefix of [outgoingPrefix(clientId), outgoingIdPrefix(clientId)]) await this.#db.clear(prefixRange(prefix))
  }

  /** Resolves once every write asked for so far, written-behind ones included, is in LevelDB; before the database closes. */
  async flush (): Promise<void> {
    await this.#commit.settled()
  }

  setSubscriptionGuard (guard: SubscriptionGuard): void {
    this.#guard = guard
  }

  setRoutingHook (hook: RoutingHook): void {
    this.#routing = hook
  }

  override async setup (broker: unknown): Promise<void> {
    await super.setup(broker)
    await this.#index.load(this.#db)
  }

  override async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    const allowed = subs.filter((sub) => this.#guard(client.id, sub.topic))
    if (allowed.length === 0) return
    this.#index.addFilters(client.id, allowed.map((sub) => sub.topic))
    await super.addSubscriptions(client, allowed)
  }

  override async removeSubscriptions (client: { id: string }, topics: string[]): Promise<void> {
    await super.removeSubscriptions(client, topics)
    this.#index.removeFilters(client.id, topics)
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
   * Writes what aedes' publish pipeline writes for a QoS>0 message (retained
   * copy, one queue entry per persistent subscriber) ahead of aedes, which
   * then finds the packet (same brokerId and brokerCounter) already stored and
   * skips its own write, so routing hooks see each message once.
   */
  async persistPublish (packet: PersistedPacket): Promise<void> {
    if (packet.retain) await super.storeRetained(packet)
    const subs = await this.subscriptionsByTopic(packet.topic)
    await this.outgoingEnqueueCombi(subs, packet)
    this.#forgetStale()
    this.#prePersisted.set(packetKey(packet), Date.now())
  }

  override async storeRetained (packet: PersistedPacket): Promise<void> {
    if (this.#prePersisted.has(packetKey(packet))) return
    await super.storeRetained(packet)
  }

  override async outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void> {
    // aedes' own write of a packet persistPublish already stored
    if (this.#prePersisted.delete(packetKey(packet))) return
    const queued = this.#routing === undefined || subs.length === 0 ? subs : await this.#routing(subs, packet)
    await this.#enqueue(queued, packet)
  }

  override async outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void> {
    await this.#enqueue([sub], packet)
  }

  /** One encoding of the message, one queue entry per subscriber, one batch. */
  async #enqueue (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    if (subs.length === 0) return
    for (const sub of subs) this.#index.markQueued(sub.clientId)
    const value = msgpack.encode(new Packet(packet))
    await this.#commit.write(subs.map((sub) => this.#put(outgoingKey(sub.clientId, packet.brokerId, packet.brokerCounter), value)))
  }

  /** The client's queue, after the writes behind have landed; no read at all for a client known to have none. */
  override outgoingStream (client: { id: string }): NodeJS.ReadableStream & AsyncIterable<PersistedPacket> {
    const index = this.#index
    const mark = index.queueMark(client.id)
    if (mark === undefined) return Readable.from([]) as NodeJS.ReadableStream & AsyncIterable<PersistedPacket>
    const settled = this.#commit.settled()
    const stored = super.outgoingStream.bind(this)
    return Readable.from((async function * () {
      await settled
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
      await this.#commit.settled()
      await super.outgoingUpdate(client, packet)
      return
    }
    // encoded only if the message is still unacknowledged when the held writes go out
    // (aedes gives each delivery its own packet object, so it does not change meanwhile)
    let encoded: Buffer | undefined
    const value = (): Buffer => (encoded ??= msgpack.encode(packet))
    const idKey = this.#db.prefixKey(outgoingIdKey(client.id, packet.messageId), 'utf8')
    const queueKey = this.#db.prefixKey(outgoingKey(client.id, packet.brokerId, packet.brokerCounter), 'utf8')
    this.#commit.writeHeld([{ type: 'put', key: idKey, value }, { type: 'put', key: queueKey, value }])
    this.#remember(client.id, { brokerId: packet.brokerId, brokerCounter: packet.brokerCounter, messageId: packet.messageId, topic: packet.topic, queueKey, idKey })
  }

  /** PUBACK: the message leaves the queue. Returns where it was (aedes passes it to its 'ack' event). */
  override async outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    const known = packet.messageId === undefined ? undefined : this.#inFlight.get(inFlightKey(client.id, packet.messageId))
    if (known === undefined) {
      // not put in flight by this process (a restart since): the library looks the id up
      await this.#commit.settled()
      return await super.outgoingClearMessageId(client, packet)
    }
    this.#inFlight.delete(inFlightKey(client.id, known.messageId))
    // acknowledged before its in-flight entry was written: the entry is never written at all.
    // (Should an earlier batch have written it, for a resend, it stays as a stale index entry
    // until the id is used again; nothing reads the index but a PUBACK for that id.)
    // The queue entry's delete replaces its held in-flight put.
    this.#commit.writeHeld(this.#commit.withdraw(known.idKey) ? [{ type: 'del', key: known.queueKey }] : [{ type: 'del', key: known.idKey }, { type: 'del', key: known.queueKey }])
    return known
  }

  #put (key: string, value: Buffer): BatchOperation {
    return { type: 'put', key: this.#db.prefixKey(key, 'utf8'), value }
  }


  #remember (clientId: string, entry: InFlight): void {
    const key = inFlightKey(clientId, entry.messageId)
    if (this.#inFlight.size < MAX_REMEMBERED_IN_FLIGHT || this.#inFlight.has(key)) this.#inFlight.set(key, entry)
  }

  /** A packet whose PUBACK could not be written never reaches aedes' publish: drop its mark after a while. */
  #forgetStale (): void {
    if (this.#prePersisted.size < 1024) return
    const cutoff = Date.now() - 60_000
    for (const [key, at] of this.#prePersisted) {
      if (at >= cutoff) break
      this.#prePersisted.delete(key)
    }
  }
}

function inFlightKey (clientId: string, messageId: number): string {
  return `${clientId}\0${messageId}`
}

function packetKey (packet: PersistedPacket): string {
  return `${packet.brokerId}:${packet.brokerCounter}`
}
