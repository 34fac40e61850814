import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import msgpack from 'msgpack-lite'
import type { GroupCommit } from './group-commit.js'
import { outgoingIdKey, outgoingKey } from './session-keys.js'
import { TransientMap } from './transient-map.js'

/** Where a message in flight to a client sits in its queue. */
export interface InFlight {
  readonly brokerId: string
  readonly brokerCounter: number
  readonly messageId: number
  readonly topic: string
  /** its queue and message-id keys as the root database stores them, once they may be on disk */
  readonly keys?: { readonly queue: string, readonly id: string }
}

/**
 * In-flight messages remembered so a PUBACK clears its queue entry without a
 * read. Entries of clients that left before acknowledging stay until the id is
 * reused; past this many, PUBACKs fall back to reading the index.
 */
const MAX_REMEMBERED_IN_FLIGHT = 100_000

/**
 * The session store's memory of what it put in flight: client id → message
 * id → the queue entry of that message. A PUBACK found here clears its entry
 * (or withdraws its held writes) without reading LevelDB; one not found (put
 * in flight before a restart, or past the bound) is looked up by the library.
 */
class InFlightMemory {
  /** a client's entry stays, empty, until its queue is deleted: no Map churn per message (transient-map.ts) */
  readonly #byClient = new Map<string, TransientMap<number, InFlight>>()
  #count = 0
  readonly #max: number

  constructor (max = MAX_REMEMBERED_IN_FLIGHT) {
    this.#max = max
  }

  /** The message in flight to this client under this id, if this process put it there and still remembers it. */
  get (clientId: string, messageId: number | undefined): InFlight | undefined {
    return messageId === undefined ? undefined : this.#byClient.get(clientId)?.get(messageId)
  }

  /** A message went in flight under its id (a resend under the same id replaces the entry, even past the bound). */
  remember (clientId: string, entry: InFlight): void {
    let ofClient = this.#byClient.get(clientId)
    if (ofClient?.has(entry.messageId) === true) {
      ofClient.set(entry.messageId, entry)
      return
    }
    if (this.#count >= this.#max) return
    if (ofClient === undefined) this.#byClient.set(clientId, ofClient = new TransientMap())
    ofClient.set(entry.messageId, entry)
    this.#count++
  }

  /** The client's queue was deleted: nothing of it is in flight any more. */
  forgetClient (clientId: string): void {
    const ofClient = this.#byClient.get(clientId)
    if (ofClient === undefined) return
    this.#count -= ofClient.size
    this.#byClient.delete(clientId)
  }

  /** The message under this id was acknowledged. */
  forget (clientId: string, messageId: number): void {
    const ofClient = this.#byClient.get(clientId)
    if (ofClient?.delete(messageId) !== true) return
    this.#count--
  }
}

export interface InFlightMessagesOptions {
  /** the session store's sublevel: keys as the root database stores them */
  readonly db: { prefixKey (key: string, keyFormat: 'utf8'): string }
  /** the session store's group commit on the root database */
  readonly commit: GroupCommit
}

/**
 * QoS 1 messages in flight to clients: the in-flight writes (the queue entry
 * rewritten with its message id, and the id's index entry, in the library's
 * layout) and their clearing at PUBACK, both written behind and held back by
 * the group commit, so that a PUBACK within the hold withdraws the in-flight
 * writes before they are even encoded.
 */
export class InFlightMessages {
  readonly #db: InFlightMessagesOptions['db']
  readonly #commit: GroupCommit
  readonly #memory = new InFlightMemory()

  constructor ({ db, commit }: InFlightMessagesOptions) {
    this.#db = db
    this.#commit = commit
  }

  /** The message in flight to this client under this id, if this process put it there and still remembers it. */
  /**
   * The client's queue was deleted (session deleted or expired). Without this its unacknowledged
   * entries stayed remembered until the bound was full, and past it every PUBACK read LevelDB.
   */
  deleted (clientId: string): void {
    this.#memory.forgetClient(clientId)
  }

  get (clientId: string, messageId: number | undefined): InFlight | undefined {
    return this.#memory.get(clientId, messageId)
  }

  /**
   * A message went in flight under `messageId` (the packet's). `fresh`: its
   * queue entry is not written yet (FreshQueue.inFlight took it), so nothing
   * is written here.
   */
  sent (clientId: string, packet: PersistedPacket, messageId: number, fresh: boolean): void {
    const { brokerId, brokerCounter, topic } = packet
    if (fresh) {
      this.#memory.remember(clientId, { brokerId, brokerCounter, messageId, topic })
      return
    }
    // encoded only if the message is still unacknowledged when the held writes go out
    // (aedes gives each delivery its own packet object, so it does not change meanwhile)
    let encoded: Buffer | undefined
    const value = (): Buffer => (encoded ??= msgpack.encode(packet))
    const keys = this.#keys(clientId, { brokerId, brokerCounter, messageId })
    this.#commit.writeHeld([{ type: 'put', key: keys.id, value }, { type: 'put', key: keys.queue, value }])
    this.#memory.remember(clientId, { brokerId, brokerCounter, messageId, topic, keys })
  }

  /**
   * PUBACK of a message get() found. `fresh`: nothing was written for this
   * recipient (FreshQueue.acknowledged), so there is nothing to clear.
   */
  acknowledged (clientId: string, known: InFlight, fresh: boolean): void {
    this.#memory.forget(clientId, known.messageId)
    if (fresh) return
    const { id: idKey, queue: queueKey } = known.keys ?? this.#keys(clientId, known)
    // acknowledged before its in-flight entry was written: the entry is never written at all.
    // (Should an earlier batch have written it, for a resend, it stays as a stale index entry
    // until the id is used again; nothing reads the index but a PUBACK for that id.)
    // The queue entry's delete replaces its held in-flight put.
    this.#commit.writeHeld(this.#commit.withdraw(idKey) ? [{ type: 'del', key: queueKey }] : [{ type: 'del', key: idKey }, { type: 'del', key: queueKey }])
  }

  #keys (clientId: string, packet: { brokerId: string, brokerCounter: number, messageId: number }): { queue: string, id: string } {
    return {
      queue: this.#db.prefixKey(outgoingKey(clientId, packet.brokerId, packet.brokerCounter), 'utf8'),
      id: this.#db.prefixKey(outgoingIdKey(clientId, packet.messageId), 'utf8'),
    }
  }
}
