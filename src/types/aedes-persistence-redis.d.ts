// aedes-persistence-redis 11 ships no types. Herald extends its async class
// (RedisSessionStore, src/store/redis/session-store.ts) for the subscriptions:
// their Redis hash per client and the in-memory trie that every broker keeps
// in step through the broker's mq (aedes-persistence's BroadcastPersistence).
declare module 'aedes-persistence-redis/asyncPersistence.js' {
  /** a packet as aedes hands it to the store */
  type PersistedPacket = object
  /** a stored subscription as subscriptionsByTopic gives it */
  interface StoredSubscription { clientId: string, topic: string, qos: number }

  export interface RedisPersistenceOptions {
    /** the ioredis client to use; destroy() disconnects it */
    conn?: import('ioredis').Redis
    maxSessionDelivery?: number
    packetTTL?: (packet: PersistedPacket) => number
  }

  export default class AsyncRedisPersistence {
    constructor (opts?: RedisPersistenceOptions)
    /** the broker given to setup() */
    get broker (): unknown
    /** Loads every stored subscription into the trie and subscribes to the other brokers' subscription changes (`$SYS/sub/+`). */
    setup (broker: unknown): Promise<void>
    storeRetained (packet: PersistedPacket): Promise<void>
    createRetainedStreamCombi (patterns: string[]): AsyncIterable<unknown>
    createRetainedStream (pattern: string): AsyncIterable<unknown>
    /** Writes the client's subscriptions and waits until the broadcast of the change has come back through the broker's mq. */
    addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void>
    removeSubscriptions (client: { id: string }, topics: string[]): Promise<void>
    subscriptionsByClient (client: { id: string }): Promise<Array<{ topic: string, qos: number }>>
    /** Every (client, filter) of QoS > 0 whose filter matches, from the in-memory trie. */
    subscriptionsByTopic (topic: string): Promise<StoredSubscription[]>
    cleanSubscriptions (client: { id: string }): Promise<void>
    countOffline (): Promise<{ subsCount: number, clientsCount: number }>
    outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void>
    outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void>
    outgoingUpdate (client: { id: string }, packet: PersistedPacket): Promise<void>
    outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown>
    outgoingStream (client: { id: string }): AsyncIterable<PersistedPacket>
    incomingStorePacket (client: { id: string }, packet: object): Promise<void>
    incomingGetPacket (client: { id: string }, packet: { messageId?: number }): Promise<unknown>
    incomingDelPacket (client: { id: string }, packet: { messageId?: number }): Promise<void>
    putWill (client: { id: string }, packet: object): Promise<void>
    getWill (client: { id: string }): Promise<unknown>
    delWill (client: { id: string, brokerId?: string }): Promise<unknown>
    streamWill (brokers?: Record<string, number>): AsyncIterable<unknown>
    getClientList (topic: string): Iterable<string>
    /** Unsubscribes from the broadcast and disconnects its ioredis client. */
    destroy (): Promise<void>
  }
}
