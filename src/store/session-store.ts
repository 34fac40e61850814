import AsyncLevelPersistence, { type PersistedPacket, type StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'

/** Decides whether a subscription may be written into a client's persistent session. */
export type SubscriptionGuard = (clientId: string, topic: string) => boolean

export type { PersistedPacket, StoredSubscription }

/** The (sub)level the session store lives in. */
export interface SessionDatabase { clear (range: { gte: string, lt: string }): Promise<void> }

/**
 * Sees every QoS>0 message on its way into offline queues, with the
 * persistent subscriptions it matched, and returns those that should queue
 * it (push-only installations keep no queue; the relay hooks in here).
 */
export type RoutingHook = (subs: StoredSubscription[], packet: PersistedPacket) => Promise<StoredSubscription[]>

/**
 * The aedes session store (aedes-persistence-level) with the two changes Herald needs:
 *
 * - aedes 1.2 stores a SUBSCRIBE packet's whole subscription list for
 *   clean=false clients, denied filters included, and would restore them on
 *   the next CONNECT. `addSubscriptions` drops every filter the guard refuses.
 * - aedes 1.2 writes PUBACK before the QoS1 message reaches the store.
 *   `persistPublish` lets the broker store it first (see broker/hooks.ts).
 * - A routing hook sees each QoS>0 message with the offline subscriptions it
 *   matched and decides which of them queue it.
 */
export class SessionStore extends AsyncLevelPersistence {
  #guard: SubscriptionGuard = () => true
  #routing: RoutingHook | undefined
  /** brokerId:brokerCounter of packets stored by persistPublish that aedes has not written yet. */
  readonly #prePersisted = new Map<string, number>()

  readonly #db: SessionDatabase

  constructor (db: SessionDatabase) {
    super(db)
    this.#db = db
  }

  /**
   * Removes everything stored for a client id: subscriptions, queued and
   * in-flight messages, will. The queue key prefixes are aedes-persistence-level
   * 9's layout (asyncPersistence.js `outgoingByClientKey` and friends);
   * test/store/session-store.test.ts fails if an upgrade changes them.
   */
  async deleteSession (clientId: string): Promise<void> {
    const client = { id: clientId }
    await this.cleanSubscriptions(client)
    await this.cleanIncoming(client)
    await this.delWill(client)
    const id = encodeURIComponent(clientId)
    for (const prefix of [`outgoing:${id}:`, `outgoing-id:${id}:`]) {
      await this.#db.clear({ gte: prefix, lt: `${prefix.slice(0, -1)};` })
    }
  }

  setSubscriptionGuard (guard: SubscriptionGuard): void {
    this.#guard = guard
  }

  setRoutingHook (hook: RoutingHook): void {
    this.#routing = hook
  }

  override async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    const allowed = subs.filter((sub) => this.#guard(client.id, sub.topic))
    if (allowed.length > 0) await super.addSubscriptions(client, allowed)
  }

  /**
   * Writes what aedes' publish pipeline writes for a QoS>0 message (retained
   * copy, one queue entry per persistent subscriber) ahead of aedes, which
   * then finds the packet (same brokerId and brokerCounter) already stored and
   * skips its own write, so routing hooks see each message once.
   */
  async persistPublish (packet: PersistedPacket): Promise<void> {
    if (packet.retain) await super.storeRetained(packet)
    const subs = await this.subscriptionsByTopic(packet.topic)
    await this.outgoingEnqueueCombi(subs, packet)
    this.#forgetStale()
    this.#prePersisted.set(packetKey(packet), Date.now())
  }

  override async storeRetained (packet: PersistedPacket): Promise<void> {
    if (this.#prePersisted.has(packetKey(packet))) return
    await super.storeRetained(packet)
  }

  override async outgoingEnqueueCombi (subs: StoredSubscription[], packet: PersistedPacket): Promise<void> {
    // aedes' own write of a packet persistPublish already stored
    if (this.#prePersisted.delete(packetKey(packet))) return
    const queued = this.#routing === undefined || subs.length === 0 ? subs : await this.#routing(subs, packet)
    await super.outgoingEnqueueCombi(queued, packet)
  }

  /** A packet whose PUBACK could not be written never reaches aedes' publish: drop its mark after a while. */
  #forgetStale (): void {
    if (this.#prePersisted.size < 1024) return
    const cutoff = Date.now() - 60_000
    for (const [key, at] of this.#prePersisted) {
      if (at >= cutoff) break
      this.#prePersisted.delete(key)
    }
  }
}

function packetKey (packet: PersistedPacket): string {
  return `${packet.brokerId}:${packet.brokerCounter}`
}
