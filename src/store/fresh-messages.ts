import msgpack from 'msgpack-lite'
import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'

/**
 * A QoS>0 message just queued for its persistent subscribers, whose
 * per-subscriber queue entries are not written yet. What is on disk is one
 * record: the message and the list of its recipients, written before the
 * publisher's PUBACK. Recipients that acknowledge within the hold period
 * never cost a LevelDB write of their own; the others get their queue
 * entries (aedes-persistence-level's layout) when the message is settled,
 * in the same batch that deletes the record.
 *
 * When every recipient is connected and the publisher's PUBACK may wait for
 * them (SessionStore.expectAcknowledgement), the record itself waits a
 * little: recipients that all acknowledge in that time leave nothing at all
 * to write, and the PUBACK goes out then.
 */
export interface FreshMessage {
  readonly packet: PersistedPacket
  /** the packet as a queue entry holds it (one encoding for every recipient), once something needs it */
  value: Buffer | undefined
  readonly createdAt: number
  /** the recipients that have not acknowledged it */
  readonly waiting: WaitingRecipients
  /** set while the record is not on its way to LevelDB yet: settles the publisher's wait */
  unwritten: { resolve (): void, reject (err: unknown): void } | undefined
}

const ACKNOWLEDGED = Symbol('acknowledged')

/**
 * A fresh message's recipients that have not acknowledged it, each with the
 * packet in flight to it (with its message id), or null while it waits.
 *
 * An acknowledgement marks its recipient instead of deleting it: a message
 * still waiting for acknowledgements when a scavenge comes moves to the old
 * generation, and there every delete that shrinks a Map's table allocates
 * the smaller table, a few kB of old-space garbage per message of a 100-way
 * fan-out (transient-map.ts says why that matters).
 */
export class WaitingRecipients {
  readonly #byClient = new Map<string, PersistedPacket | null | typeof ACKNOWLEDGED>()
  #count = 0

  /** built without intermediate arrays: this runs for every QoS 1 message to persistent sessions */
  constructor (recipients: ReadonlyArray<{ readonly clientId: string }>) {
    for (const recipient of recipients) this.#byClient.set(recipient.clientId, null)
    this.#count = this.#byClient.size
  }

  /** how many have not acknowledged */
  get size (): number {
    return this.#count
  }

  has (clientId: string): boolean {
    const state = this.#byClient.get(clientId)
    return state !== undefined && state !== ACKNOWLEDGED
  }

  /** The message went in flight to a waiting recipient: this packet, with its message id. */
  inFlight (clientId: string, packet: PersistedPacket): void {
    if (this.has(clientId)) this.#byClient.set(clientId, packet)
  }

  /** True when `clientId` was waiting (it no longer is). */
  acknowledge (clientId: string): boolean {
    if (!this.has(clientId)) return false
    this.#byClient.set(clientId, ACKNOWLEDGED)
    this.#count--
    return true
  }

  /** Each recipient still waiting, with the packet in flight to it or null. */
  * entries (): IterableIterator<[string, PersistedPacket | null]> {
    for (const [clientId, state] of this.#byClient) if (state !== ACKNOWLEDGED) yield [clientId, state]
  }

  /** the recipients still waiting (when the record is written, or the message dropped: not per acknowledgement) */
  clientIds (): string[] {
    return Array.from(this.entries(), ([clientId]) => clientId)
  }
}

/** Every record: `fresh:<broker id>:<counter>`, in the session store's sublevel, apart from the library's prefixes. */
export const FRESH_PREFIX = 'fresh:'

export function freshRecordKey (brokerId: string, brokerCounter: number): string {
  return `${FRESH_PREFIX}${brokerId}:${brokerCounter}`
}

/** The record: the queue entry's bytes and the recipients' client ids. */
export function encodeFreshRecord (value: Buffer, clientIds: readonly string[]): Buffer {
  return msgpack.encode([value, clientIds])
}

/** A record read back at start, after a crash; undefined when it is not one this code wrote. */
export function decodeFreshRecord (record: Buffer): { value: Buffer, clientIds: string[] } | undefined {
  const decoded: unknown = msgpack.decode(record)
  if (!Array.isArray(decoded) || decoded.length !== 2) return undefined
  const [value, clientIds] = decoded as [unknown, unknown]
  if (!Buffer.isBuffer(value) || !Array.isArray(clientIds) || !clientIds.every((id) => typeof id === 'string')) return undefined
  return { value, clientIds: clientIds as string[] }
}
