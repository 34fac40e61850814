// aedes-persistence-level ships no types. Herald uses its async class directly:
// aedes 1.x calls persistence methods as promises, and the package's default
// export wraps the class in a callback adapter that Herald does not need.
declare module 'aedes-persistence-level/asyncPersistence.js' {
  export interface StoredSubscription { clientId: string, topic: string, qos: number }
  export interface PersistedPacket { topic: string, payload: Buffer, qos: number, retain: boolean, brokerId: string, brokerCounter: number, cmd?: string, messageId?: number }

  export default class AsyncLevelPersistence {
    /** A level database or sublevel; values are written with per-call buffer encoding. */
    constructor (db: object)
    setup (broker: unknown): Promise<void>
    storeRetained (packet: PersistedPacket): Promise<void>
    createRetainedStreamCombi (patterns: string[]): NodeJS.ReadableStream
    createRetainedStream (pattern: string): NodeJS.ReadableStream
    addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void>
    removeSubscriptions (client: { id: string }, topics: string[]): Promise<void>
    subscriptionsByClient (client: { id: string }): Promise<Array<{ topic: string, qos: number }>>
    subscriptionsByTopic (topic: string): Promise<StoredSubscription[]>
    cleanSubscriptions (client: { id: string }): Promise<void>
    cleanIncoming (client: { id: string }): Promise<void>
    putWill (client: { id: string }, packet: object): Promise<void>
    getWill (client: { id: string }): Promise<unknown>
    delWill (client: { id: string }): Promise<unknown>
    outgoingEnqueue (sub: { clientId: string }, packet: PersistedPacket): Promise<void>
    outgoingStream (client: { id: string }): NodeJS.ReadableStream & AsyncIterable<PersistedPacket>
    outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void>
    outgoingUpdate (client: { id: string }, packet: PersistedPacket): Promise<void>
    outgoingClearMessageId (client: { id: string }, packet: { messageId?: number }): Promise<unknown>
    incomingStorePacket (client: { id: string }, packet: object): Promise<void>
    incomingGetPacket (client: { id: string }, packet: { messageId?: number }): Promise<unknown>
    incomingDelPacket (client: { id: string }, packet: { messageId?: number }): Promise<void>
    streamWill (brokers?: Record<string, number>): NodeJS.ReadableStream
    destroy (): Promise<void>
  }
}

declare module 'aedes-packet' {
  export default class Packet {
    constructor (original: object, broker?: object)
    brokerId: string
    brokerCounter: number
    topic: string
    payload: Buffer
    qos: number
    retain: boolean
  }
}

// msgpack-lite ships no types; the session store encodes queue entries with it
// because aedes-persistence-level decodes them with it.
declare module 'msgpack-lite' {
  const msgpack: { encode (value: unknown): Buffer, decode (buffer: Buffer): unknown }
  export default msgpack
}
