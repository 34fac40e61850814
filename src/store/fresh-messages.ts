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
  /** recipients that have not acknowledged → the packet in flight to them (with its message id), or null while it waits */
  readonly waiting: Map<string, PersistedPacket | null>
  /** set while the record is not on its way to LevelDB yet: settles the publisher's wait */
  unwritten: { resolve (): void, reject (err: unknown): void } | undefined
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
