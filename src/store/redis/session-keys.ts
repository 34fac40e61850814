/**
 * The Redis keys of the session store (RedisSessionStore), all under
 * `<cluster.keyPrefix>sessions:` (ioredis adds the first part, these names
 * carry SESSIONS_PREFIX).
 *
 * Subscriptions, wills, incoming QoS 2 messages and the retained hash are in
 * aedes-persistence-redis 11's layout; beside them are the sets that answer
 * Herald's questions (which clients have a will, a queue, which topics a
 * retained message) without scanning the key space, and the sequence numbers
 * of the changes every node mirrors. Queues are Herald's own
 * (`queue:<client>`, `msg:<broker id>:<counter>`): the library's
 * `outgoing:<client>` lists name packets whose counts its writes do not keep
 * atomically.
 */

/** After `cluster.keyPrefix`: one Redis serves the session store beside Herald's other stores. */
export const SESSIONS_PREFIX = 'sessions:'
const S = SESSIONS_PREFIX

/** Client ids are URI-encoded in keys, as the library does: no `:` inside a key part. */
function id (clientId: string): string {
  return encodeURIComponent(clientId)
}

/** Set of the client ids with subscriptions (the library's CLIENTSKEY). */
export const CLIENTS_KEY = `${S}clients`

/** A client's subscriptions: topic → msgpack of the subscription (the library's clientSubKey). */
export function clientSubscriptionsKey (clientId: string): string {
  return `${S}client:${id(clientId)}`
}

/** The number of the last subscription change (redis/subscriptions.ts). */
export const SUBSCRIPTIONS_SEQ_KEY = `${S}subscriptions-seq`

/** Channel (after conn.channel) on which every node hears the subscription changes. */
export const SUBSCRIPTIONS_CHANNEL = `${S}subscriptions`

/**
 * The QoS > 0 subscriptions to exactly this filter (no wildcard): client id →
 * msgpack of the subscription, as in the client's hash. What a message's
 * topic matches among them is this one key, so no node keeps them in memory
 * (redis/subscriptions.ts).
 */
export function exactSubscribersKey (topic: string): string {
  return `${S}topic:${topic}`
}

/** The number of QoS > 0 subscriptions in the exactSubscribersKey hashes (countOffline). */
export const EXACT_SUBSCRIPTIONS_COUNT_KEY = `${S}exact-subscriptions-count`

/** Set of the client ids whose queue is not empty. */
export const QUEUES_KEY = `${S}queues`

/**
 * A queued message for any number of clients: a hash of `p` (the packet,
 * msgpack as the library encodes it, without a message id) and `n` (how
 * many queue entries name it; the hash goes with the last).
 */
export function messageKey (brokerId: string, brokerCounter: number | string): string {
  return `${MESSAGE_KEY_PREFIX}${brokerId}:${brokerCounter}`
}

/** What comes before `<broker id>:<counter>` in a message key; its queue entries carry `m:<broker id>:<counter>`. */
export const MESSAGE_KEY_PREFIX = `${S}msg:`

/**
 * A client's queue, oldest first: a list of entries `m:<broker id>:<counter>`
 * (a message, messageKey) or `r:<message id>` (a QoS 2 PUBREL waiting for
 * its PUBCOMP, which needs nothing else stored).
 */
export function queueKey (clientId: string): string {
  return `${S}queue:${id(clientId)}`
}

/** A client's message ids in flight: `m:<message id>` → entry, and `e:<entry>` → message id. */
export function queueIdsKey (clientId: string): string {
  return `${S}queue-ids:${id(clientId)}`
}

export function messageEntry (brokerId: string, brokerCounter: number | string): string {
  return `m:${brokerId}:${brokerCounter}`
}

/** List of the will keys (the library's WILLSKEY). */
export const WILLS_KEY = `${S}will`

const WILL_KEY_PREFIX = `${S}will:`

/** A will, stored by the broker that holds the connection (the library's willKey). */
export function willKey (brokerId: string, clientId: string): string {
  return `${WILL_KEY_PREFIX}${brokerId}:${id(clientId)}`
}

/** The broker and client a will key names, or undefined for a key of another shape. */
export function parseWillKey (key: string): { brokerId: string, clientId: string } | undefined {
  const last = key.lastIndexOf(':')
  if (!key.startsWith(WILL_KEY_PREFIX) || last <= WILL_KEY_PREFIX.length) return undefined
  try {
    return { brokerId: key.slice(WILL_KEY_PREFIX.length, last), clientId: decodeURIComponent(key.slice(last + 1)) }
  } catch {
    return undefined
  }
}

/** Set of the broker ids that hold a will of the client. */
export function willBrokersKey (clientId: string): string {
  return `${S}will-brokers:${id(clientId)}`
}

/** Set of the client ids with a will. */
export const WILL_CLIENTS_KEY = `${S}will-clients`

/** Prefix of a client's incoming QoS 2 messages, `incoming:<id>:<message id>` (the library's incomingKey). */
export function incomingPrefix (clientId: string): string {
  return `${S}incoming:${id(clientId)}:`
}

/** Set of a client's incoming message ids. */
export function incomingIdsKey (clientId: string): string {
  return `${S}incoming-ids:${id(clientId)}`
}

/** Hash of the retained messages, topic → packet (the library's RETAINEDKEY on a single Redis). */
export const RETAINED_KEY = `${S}retained`

/** Set of the retained topics, for loading the mirror without reading the messages. */
export const RETAINED_TOPICS_KEY = `${S}retained-topics`

/** Hash of retained topics per namespace (`users/alice` → count), for the bounds. */
export const RETAINED_COUNTS_KEY = `${S}retained-counts`

/** Channel (after conn.channel) on which every node hears retained topics come and go. */
export const RETAINED_CHANNEL = `${S}retained`
