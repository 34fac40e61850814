/**
 * Key layout of aedes-persistence-level 9's queues (asyncPersistence.js
 * `outgoingKey`, `outgoingByIdKey`, `padId`; not exported there). Herald
 * writes the hot queue operations itself, so it must write the same keys;
 * test/store/session-store.test.ts reads them back through the library.
 */

/** Message ids and broker counters are zero-padded to 16 digits so keys sort in queue order. */
function padId (id: number): string {
  return id.toString().padStart(16, '0')
}

/** Prefix of every queued message of a client (`outgoing:<id>:`). */
export function outgoingPrefix (clientId: string): string {
  return `outgoing:${encodeURIComponent(clientId)}:`
}

/** Prefix of the message-id index of a client's in-flight messages. */
export function outgoingIdPrefix (clientId: string): string {
  return `outgoing-id:${encodeURIComponent(clientId)}:`
}

/** A queued message: one per persistent subscriber and message. */
export function outgoingKey (clientId: string, brokerId: string, brokerCounter: number): string {
  return `${outgoingPrefix(clientId)}${brokerId}:${padId(brokerCounter)}`
}

/** A message in flight to a client under a message id. */
export function outgoingIdKey (clientId: string, messageId: number): string {
  return `${outgoingIdPrefix(clientId)}${padId(messageId)}`
}
