import Packet from 'aedes-packet'
import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import msgpack from 'msgpack-lite'

/**
 * Key layout of aedes-persistence-level 9's queues (asyncPersistence.js
 * `outgoingKey`, `outgoingByIdKey`, `padId`; not exported there), and how it
 * encodes a queue entry. Herald writes the hot queue operations itself, so it
 * must write the same keys and values; test/store/session-store.test.ts reads
 * them back through the library.
 */

/** Message ids and broker counters are zero-padded to 16 digits so keys sort in queue order. */
function padId (id: number): string {
  return id.toString().padStart(16, '0')
}

/** Every queued message: `outgoing:<client id>:<broker id>:<counter>`. */
export const OUTGOING_PREFIX = 'outgoing:'

/** Prefix of every queued message of a client (`outgoing:<id>:`). */
export function outgoingPrefix (clientId: string): string {
  return `${OUTGOING_PREFIX}${encodeURIComponent(clientId)}:`
}

/** Prefix of the message-id index of a client's in-flight messages. */
export function outgoingIdPrefix (clientId: string): string {
  return `outgoing-id:${encodeURIComponent(clientId)}:`
}

/** A queued message: one per persistent subscriber and message. */
export function outgoingKey (clientId: string, brokerId: string, brokerCounter: number): string {
  return `${outgoingPrefix(clientId)}${brokerId}:${padId(brokerCounter)}`
}

/** A queue entry's bytes: aedes-packet's fields, as aedes-persistence-level stores them. */
export function encodeQueueEntry (packet: PersistedPacket): Buffer {
  return msgpack.encode(new Packet(packet))
}

/** A message in flight to a client under a message id. */
export function outgoingIdKey (clientId: string, messageId: number): string {
  return `${outgoingIdPrefix(clientId)}${padId(messageId)}`
}

/** Every stored subscription: `subscriptions:<client id>:<topic filter>`. */
export const SUBSCRIPTIONS_PREFIX = 'subscriptions:'

/** Every stored will: `will:<client id>`. */
export const WILL_PREFIX = 'will:'

/** The client id of a `subscriptions:` or `will:` key (ids are URI-encoded, so the first ':' after the prefix ends it). */
export function clientIdOfKey (key: string, prefix: string): string {
  const rest = key.slice(prefix.length)
  const end = rest.indexOf(':')
  return decodeURIComponent(end === -1 ? rest : rest.slice(0, end))
}

/** The range of keys under a prefix ending in ':' (the library's `prefixRange`: ':' + 1 is ';'). */
export function prefixRange (prefix: string): { gte: string, lt: string } {
  return { gte: prefix, lt: `${prefix.slice(0, -1)};` }
}
