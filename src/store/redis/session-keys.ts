/**
 * The Redis keys of the session store (RedisSessionStore), all under
 * `<cluster.keyPrefix>sessions:` (SESSIONS_PREFIX; ioredis adds it).
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

/** Client ids are URI-encoded in keys, as the library does: no `:` inside a key part. */
function id (clientId: string): string {
  return encodeURIComponent(clientId)
}

/** Set of the client ids with subscriptions (the library's CLIENTSKEY). */
export const CLIENTS_KEY = 'clients'

/** A client's subscriptions: topic → msgpack of the subscription (the library's clientSubKey). */
export function clientSubscriptionsKey (clientId: string): string {
  return `client:${id(clientId)}`
}

/** The number of the last subscription change (redis/subscriptions.ts). */
export const SUBSCRIPTIONS_SEQ_KEY = 'subscriptions-seq'

/** Channel (after conn.channel) on which every node hears the subscription changes. */
export const SUBSCRIPTIONS_CHANNEL = 'sessions:subscriptions'

/** Set of the client ids whose queue is not empty. */
export const QUEUES_KEY = 'queues'

/**
 * A queued message for any number of clients: a hash of `p` (the packet,
 * msgpack as the library encodes it, without a message id) and `n` (how
 * many queue entries name it; the hash goes with the last).
 */
export function messageKey (brokerId: string, brokerCounter: number | string): string {
  return `msg:${brokerId}:${brokerCounter}`
}

/** The part of a message key after `msg:`, which its queue entries carry as `m:<this>`. */
export const MESSAGE_KEY_PREFIX = 'msg:'

/**
 * A client's queue, oldest first: a list of entries `m:<broker id>:<counter>`
 * (a message, messageKey) or `r:<message id>` (a QoS 2 PUBREL waiting for
 * its PUBCOMP, which needs nothing else stored).
 */
export function queueKey (clientId: string): string {
  return `queue:${id(clientId)}`
}

/** A client's message ids in flight: `m:<message id>` → entry, and `e:<entry>` → message id. */
export function queueIdsKey (clientId: string): string {
  return `queue-ids:${id(clientId)}`
}

export function messageEntry (brokerId: string, brokerCounter: number | string): string {
  return `m:${brokerId}:${brokerCounter}`
}

/** List of the will keys (the library's WILLSKEY). */
export const WILLS_KEY = 'will'

/** A will, stored by the broker that holds the connection (the library's willKey). */
export function willKey (brokerId: string, clientId: string): string {
  return `will:${brokerId}:${id(clientId)}`
}

/** The broker and client a will key names, or undefined for a key of another shape. */
export function parseWillKey (key: string): { brokerId: string, clientId: string } | undefined {
  const last = key.lastIndexOf(':')
  if (!key.startsWith('will:') || last <= 5) return undefined
  try {
    return { brokerId: key.slice(5, last), clientId: decodeURIComponent(key.slice(last + 1)) }
  } catch {
    return undefined
  }
}

/** Set of the broker ids that hold a will of the client. */
export function willBrokersKey (clientId: string): string {
  return `will-brokers:${id(clientId)}`
}

/** Set of the client ids with a will. */
export const WILL_CLIENTS_KEY = 'will-clients'

/** Prefix of a client's incoming QoS 2 messages, `incoming:<id>:<message id>` (the library's incomingKey). */
export function incomingPrefix (clientId: string): string {
  return `incoming:${id(clientId)}:`
}

/** Set of a client's incoming message ids. */
export function incomingIdsKey (clientId: string): string {
  return `incoming-ids:${id(clientId)}`
}

/** Hash of the retained messages, topic → packet (the library's RETAINEDKEY on a single Redis). */
export const RETAINED_KEY = 'retained'

/** Set of the retained topics, for loading the mirror without reading the messages. */
export const RETAINED_TOPICS_KEY = 'retained-topics'

/** Hash of retained topics per namespace (`users/alice` → count), for the bounds. */
export const RETAINED_COUNTS_KEY = 'retained-counts'

/** Channel (after conn.channel) on which every node hears retained topics come and go. */
export const RETAINED_CHANNEL = 'sessions:retained'
