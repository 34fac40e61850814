import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import msgpack from 'msgpack-lite'
import { decodeFreshRecord, encodeFreshRecord, FRESH_PREFIX, freshRecordKey, WaitingRecipients, type FreshMessage } from './fresh-messages.js'
import type { BatchOperation, GroupCommit, HeldOperation } from './group-commit.js'
import { encodeQueueEntry, outgoingIdKey, outgoingKey, prefixRange } from './session-keys.js'
import { TransientMap } from './transient-map.js'

/** The session store's sublevel, as far as fresh messages use it. */
export interface FreshDatabase {
  iterator (range: { gte: string, lt: string }): AsyncIterable<[string, Buffer]>
  /** abstract-level sublevel API: this key as the root database stores it */
  prefixKey (key: string, keyFormat: 'utf8'): string
}

export interface FreshQueueOptions {
  readonly db: FreshDatabase
  /** the session store's group commit on the root database */
  readonly commit: GroupCommit
  /** how long recipients have to acknowledge before their queue entries are written */
  readonly holdMs: number
  /** how long a record waits for acknowledgements when all its recipients are connected (awaitAcks) */
  readonly ackWaitMs: number
  /** a recipient's entry that will never exist (its message was not stored): the queue bound stops counting it */
  readonly onDropped: (clientId: string) => void
}

/**
 * The messages for several recipients whose queue entries are not written
 * yet (FreshMessage says why), and their two timers: after `holdMs` the
 * entries of recipients that have not acknowledged are written and the record
 * deleted (settle); after `ackWaitMs` the records that waited for
 * acknowledgements (awaitAcks) are written. Keys and values are the
 * library's (session-keys.ts); everything goes through the store's group
 * commit.
 */
export class FreshQueue {
  readonly #options: FreshQueueOptions
  /** brokerCounter → messages whose queue entries are not written yet, oldest first (see #of) */
  readonly #fresh = new TransientMap<number, FreshMessage>()
  #freshTimer: NodeJS.Timeout | undefined
  /** brokerCounter → fresh messages whose record waits for acknowledgements, oldest first */
  readonly #unwritten = new TransientMap<number, FreshMessage>()
  #unwrittenTimer: NodeJS.Timeout | undefined

  constructor (options: FreshQueueOptions) {
    this.#options = options
  }

  /** One record of the message and its recipients, durable when this resolves. */
  async write (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    const message = this.#add(subs, packet)
    try {
      await this.#options.commit.write([this.#recordOf(message)])
    } catch (err) {
      this.#drop(message)
      throw err
    }
  }

  /** A fresh message whose record waits until ackWaitMs for its recipients to acknowledge it; resolves when the publisher may get its PUBACK. */
  awaitAcks (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    const message = this.#add(subs, packet)
    this.#unwritten.set(packet.brokerCounter, message)
    // not unref'd: a publisher waits for it, and nothing of the message is on disk yet
    this.#unwrittenTimer ??= setTimeout(() => this.#writeUnwrittenOnTimer(), this.#options.ackWaitMs)
    return new Promise<void>((resolve, reject) => { message.unwritten = { resolve, reject } })
  }

  /**
   * The message went in flight to a client. True when it is a fresh message
   * waiting for that client: nothing of this delivery is on disk but the
   * record, and its entry is written (with its message id) only if not
   * acknowledged in time.
   */
  inFlight (clientId: string, packet: PersistedPacket): boolean {
    const fresh = this.#of(packet)
    if (fresh?.waiting.has(clientId) !== true) return false
    fresh.waiting.inFlight(clientId, packet)
    return true
  }

  /** PUBACK from a client. True when the message was fresh and waiting for it: nothing was written for this recipient. */
  acknowledged (clientId: string, packet: { brokerId: string, brokerCounter: number }): boolean {
    const fresh = this.#of(packet)
    if (fresh?.waiting.acknowledge(clientId) !== true) return false
    // the record goes once nobody waits for the message
    if (fresh.waiting.size > 0) return true
    this.#fresh.delete(packet.brokerCounter)
    if (fresh.unwritten === undefined) {
      this.#options.commit.writeHeld([{ type: 'del', key: this.#recordKey(fresh) }])
    } else {
      // acknowledged by all before its record was written: nothing is, and the publisher gets its PUBACK.
      // The timer runs on (it finds nothing and stops): clearing and arming it for every message
      // cost more than its firing at most once per ackWaitMs.
      this.#unwritten.delete(packet.brokerCounter)
      fresh.unwritten.resolve()
      fresh.unwritten = undefined
    }
    return true
  }

  /**
   * Fresh messages created up to `createdBy` (Infinity: all of them): the
   * queue entries of the recipients that have not acknowledged yet (with the
   * message id of those it is in flight to), and the record's delete, all in
   * one batch, held back by the group commit.
   */
  settle (createdBy: number): void {
    // their records are written first (their publishers wait for that); the deletes below replace them when both share a batch
    this.#writeUnwritten(createdBy)
    const operations: HeldOperation[] = []
    for (const [key, message] of this.#fresh) {
      if (message.createdAt > createdBy) break
      this.#fresh.delete(key)
      this.#addEntries(operations, message)
      operations.push({ type: 'del', key: this.#recordKey(message) })
    }
    if (operations.length > 0) this.#options.commit.writeHeld(operations)
    if (this.#fresh.size === 0) {
      clearTimeout(this.#freshTimer)
      this.#freshTimer = undefined
    }
  }

  /** After a crash (at setup): the records of fresh messages become the queue entries of all their recipients. */
  async recover (): Promise<void> {
    const { db, commit } = this.#options
    const operations: BatchOperation[] = []
    for await (const [key, record] of db.iterator(prefixRange(FRESH_PREFIX))) {
      const decoded = decodeFreshRecord(record)
      const packet = decoded === undefined ? undefined : msgpack.decode(decoded.value) as Partial<PersistedPacket>
      if (decoded !== undefined && typeof packet?.brokerId === 'string' && typeof packet.brokerCounter === 'number') {
        for (const clientId of decoded.clientIds) {
          operations.push({ type: 'put', key: db.prefixKey(outgoingKey(clientId, packet.brokerId, packet.brokerCounter), 'utf8'), value: decoded.value })
        }
      }
      operations.push({ type: 'del', key: db.prefixKey(key, 'utf8') })
    }
    await commit.write(operations)
  }

  /** The queue entries of a message's recipients that have not acknowledged it (appended: a fan-out may have more than a call's arguments). */
  #addEntries (operations: HeldOperation[], message: FreshMessage): void {
    const { db } = this.#options
    const { brokerId, brokerCounter } = message.packet
    for (const [clientId, inFlight] of message.waiting.entries()) {
      const queueKey = db.prefixKey(outgoingKey(clientId, brokerId, brokerCounter), 'utf8')
      if (inFlight === null) {
        operations.push({ type: 'put', key: queueKey, value: entryOf(message) })
        continue
      }
      const value = msgpack.encode(inFlight)
      operations.push({ type: 'put', key: queueKey, value }, { type: 'put', key: db.prefixKey(outgoingIdKey(clientId, inFlight.messageId as number), 'utf8'), value })
    }
  }

  #add (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): FreshMessage {
    const waiting = new WaitingRecipients(subs)
    const message: FreshMessage = { packet, value: undefined, createdAt: Date.now(), waiting, unwritten: undefined }
    this.#fresh.set(packet.brokerCounter, message)
    this.#freshTimer ??= this.#freshTimerStart()
    return message
  }

  /** Not stored: the publisher gets no PUBACK, and no entry may appear later. */
  #drop (message: FreshMessage): void {
    if (this.#of(message.packet) === message) this.#fresh.delete(message.packet.brokerCounter)
    for (const clientId of message.waiting.clientIds()) this.#options.onDropped(clientId)
  }

  /** The fresh message this packet is, if it is one (counters are per broker id). */
  #of (packet: { brokerId: string, brokerCounter: number }): FreshMessage | undefined {
    const fresh = this.#fresh.get(packet.brokerCounter)
    return fresh?.packet.brokerId === packet.brokerId ? fresh : undefined
  }

  #writeUnwrittenOnTimer (): void {
    this.#unwrittenTimer = undefined
    const now = Date.now()
    this.#writeUnwritten(now - this.#options.ackWaitMs)
    // the oldest still waiting is written when its own ackWaitMs is up
    const oldest = this.#unwritten.values().next()
    if (oldest.done !== true) this.#unwrittenTimer = setTimeout(() => this.#writeUnwrittenOnTimer(), Math.max(1, oldest.value.createdAt + this.#options.ackWaitMs - now))
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
    this.#options.commit.write(messages.map((message) => this.#recordOf(message))).then(() => {
      for (const waiter of waiters) waiter?.resolve()
    }, (err: unknown) => {
      for (const message of messages) this.#drop(message)
      for (const waiter of waiters) waiter?.reject(err)
    })
  }

  /** The record of a fresh message, with the recipients that still wait for it. */
  #recordOf (message: FreshMessage): BatchOperation {
    return { type: 'put', key: this.#recordKey(message), value: encodeFreshRecord(entryOf(message), message.waiting.clientIds()) }
  }

  /** The record's key as the root database stores it: only made when the record is written or deleted, which most messages never are. */
  #recordKey (message: FreshMessage): string {
    return this.#options.db.prefixKey(freshRecordKey(message.packet.brokerId, message.packet.brokerCounter), 'utf8')
  }

  #settleOnTimer (): void {
    this.#freshTimer = undefined
    this.settle(Date.now() - this.#options.holdMs)
    if (this.#fresh.size > 0) this.#freshTimer = this.#freshTimerStart()
  }

  /** unref'd: it never keeps a process alive (SessionStore.flush() settles what is left; a record survives anything else) */
  #freshTimerStart (): NodeJS.Timeout {
    return setTimeout(() => this.#settleOnTimer(), this.#options.holdMs).unref()
  }
}

/** A fresh message's queue entry, encoded once, when something first needs it. */
function entryOf (message: FreshMessage): Buffer {
  return (message.value ??= encodeQueueEntry(message.packet))
}
