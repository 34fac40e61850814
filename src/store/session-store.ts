import AsyncLevelPersistence, { type PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'

/** Decides whether a subscription may be written into a client's persistent session. */
export type SubscriptionGuard = (clientId: string, topic: string) => boolean

/**
 * The aedes session store (aedes-persistence-level) with the two changes Herald needs:
 *
 * - aedes 1.2 stores a SUBSCRIBE packet's whole subscription list for
 *   clean=false clients, denied filters included, and would restore them on
 *   the next CONNECT. `addSubscriptions` drops every filter the guard refuses.
 * - aedes 1.2 writes PUBACK before the QoS1 message reaches the store.
 *   `persistPublish` lets the broker store it first (see broker/hooks.ts).
 */
export class SessionStore extends AsyncLevelPersistence {
  #guard: SubscriptionGuard = () => true

  setSubscriptionGuard (guard: SubscriptionGuard): void {
    this.#guard = guard
  }

  override async addSubscriptions (client: { id: string }, subs: Array<{ topic: string, qos: number }>): Promise<void> {
    const allowed = subs.filter((sub) => this.#guard(client.id, sub.topic))
    if (allowed.length > 0) await super.addSubscriptions(client, allowed)
  }

  /**
   * Writes what aedes' publish pipeline writes for a QoS>0 message (retained
   * copy, one queue entry per persistent subscriber). Entries are keyed by
   * brokerId and brokerCounter, so aedes writing the same packet again
   * afterwards overwrites them instead of queueing a duplicate.
   */
  async persistPublish (packet: PersistedPacket): Promise<void> {
    if (packet.retain) await this.storeRetained(packet)
    const subs = await this.subscriptionsByTopic(packet.topic)
    await this.outgoingEnqueueCombi(subs, packet)
  }
}
