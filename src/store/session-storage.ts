import type { PersistedPacket, StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'
import type { RetainedLimits } from './retained-messages.js'
import type { SessionPolicy } from './session-policy.js'

export type { PersistedPacket, StoredSubscription }

/** What is stored for a client id (session expiry asks). */
export interface SessionState {
  readonly subscriptions: boolean
  readonly will: boolean
  readonly queue: boolean
}

/** Hears about `limits.maxQueuedMessagesPerSession` at work. */
export interface QueueLimitHandlers {
  /** messages dropped from a client's queue (the oldest ones) */
  readonly onDropped: (clientId: string, count: number) => void
  /** a trim that failed and that nobody waits for */
  readonly onError: (err: unknown) => void
}

/**
 * The persistence methods aedes 1.2 calls (lib/client.js, lib/handlers/,
 * aedes.js), in their promise form: aedes takes the session store as its
 * `persistence`. aedes-persistence's abstract suite checks them
 * (test/contracts/session-store.test.ts).
 */
export interface AedesPersistence {
  setup (broker: unknown): Promise<void>
  storeRetained (packet: PersistedPacket): Promise<void>
  createRetainedStreamCombi (patterns: string[]): NodeJS.ReadableStream
  addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void>
  removeSubscriptions (client: { id: string }, topics: string[]): Promise<void>
  subscriptionsByClient (client: { id: string }): Promise<Array<{ topic: string, qos: number }>>
  subscriptionsByTopic (topic: string): Promise<StoredSubscription[]>
  cleanSubscriptions (client: { id: string }): Promise<void>
  outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void>
  outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void>
  outgoingUpdate (client: { id: string }, packet: PersistedPacket): Promise<void>
  outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown>
  outgoingStream (client: { id: string }): NodeJS.ReadableStream & AsyncIterable<PersistedPacket>
  incomingStorePacket (client: { id: string }, packet: object): Promise<void>
  incomingGetPacket (client: { id: string }, packet: { messageId?: number }): Promise<unknown>
  incomingDelPacket (client: { id: string }, packet: { messageId?: number }): Promise<void>
  cleanIncoming (client: { id: string }): Promise<void>
  putWill (client: { id: string }, packet: object): Promise<void>
  /** `brokerId`: the broker that stored the will (aedes passes it when a dead broker's will is published) */
  delWill (client: { id: string, brokerId?: string }): Promise<unknown>
  /** The wills of brokers not in `brokers` (broker id → last heartbeat): aedes publishes those of dead brokers. */
  streamWill (brokers?: Record<string, number>): NodeJS.ReadableStream
  destroy (): Promise<void>
}

/**
 * The session store as the rest of Herald sees it: aedes' persistence plus
 * Herald's semantics (the subscription guard and routing hook of `policy`,
 * the PUBACK gate, the bounds on queues and retained messages, session
 * expiry). Two implementations: SessionStore on LevelDB (session-store.ts,
 * the default) and RedisSessionStore (redis/session-store.ts, cluster mode).
 *
 * Which methods answer synchronously, and why:
 * - `mayRetain` runs inside aedes' authorizePublish, and aedes dispatches the
 *   packets of one socket read concurrently (lib/client.js `enqueue`): an
 *   asynchronous answer for a retained PUBLISH would let the next PUBLISH of
 *   the same read overtake it. Both stores answer from memory (the Redis store
 *   from a mirror of the retained topics that every node keeps); the write
 *   itself (storeRetained) re-checks the bounds and is the authority.
 * - `expectAcknowledgement`/`safeToAck` are called around aedes' publish
 *   (broker/puback-order.ts) and only consult memory.
 * - `sessionState`/`sessionClientIds` are asynchronous: in a cluster they are
 *   questions about Redis.
 */
export interface SessionStorage extends AedesPersistence {
  /** the broker's decisions the store consults (session-policy.ts), filled in by the wiring */
  readonly policy: SessionPolicy

  /** Removes everything stored for a client id: subscriptions, queued and in-flight messages, will. */
  deleteSession (clientId: string): Promise<void>
  /** Removes a client id's queued and in-flight messages and its will, and keeps its subscriptions. */
  deleteQueue (clientId: string): Promise<void>
  /** Bounds every session's queue to its newest `max` messages (`limits.maxQueuedMessagesPerSession`); once, before clients connect. */
  limitQueues (max: number, handlers: QueueLimitHandlers): Promise<void>
  /** What is stored for a client id. */
  sessionState (clientId: string): Promise<SessionState>
  /** Every client id with stored subscriptions, a will or possibly queued messages. */
  sessionClientIds (): Promise<Set<string>>
  /** Resolves once every write asked for so far has landed; before the store closes. */
  flush (): Promise<void>

  /** The bounds on retained messages (`limits.maxRetained*`). */
  limitRetained (limits: RetainedLimits): void
  /** Whether a retained PUBLISH on `topic` may be stored now (false: a new topic beyond a bound); see above for why it is synchronous. */
  mayRetain (topic: string, payloadLength: number): boolean

  /** Announces a QoS 1 publish whose publisher's PUBACK will wait for safeToAck() (broker/puback-order.ts). */
  expectAcknowledgement (packet: { brokerId: string, brokerCounter: number }): void
  /** What the publisher of an announced publish still waits for once aedes' publish is done; undefined: nothing. */
  safeToAck (packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined
}
