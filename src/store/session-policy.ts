import type { PersistedPacket, StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'

/** Decides whether a subscription may be written into a client's persistent session. */
export type SubscriptionGuard = (clientId: string, topic: string) => boolean

/**
 * Sees every QoS>0 message on its way into offline queues, with the
 * persistent subscriptions it matched, and returns those that should queue
 * it (push-only installations keep no queue; the relay hooks in here): at
 * once, or once the relay has written what it sends.
 */
export type RoutingHook = (subs: StoredSubscription[], packet: PersistedPacket) => StoredSubscription[] | Promise<StoredSubscription[]>

/**
 * The broker's decisions the session store consults: which subscriptions a
 * session may keep, which clients are connected (and may acknowledge a
 * message soon), which subscribers queue a message.
 *
 * Why an object given at construction and filled in afterwards, rather than
 * the three functions as constructor arguments: they need the connection
 * registry (broker/hooks.ts) and the relay (server.ts), and both are built
 * after the store, because aedes takes the store as its persistence when it
 * is created and the relay needs the broker. The store's collaborators are
 * thereby named where it is constructed (createBroker), and the wiring fills
 * them in before any client connects, without turning the composition order
 * inside out. Until then: every subscription may be stored, nobody is
 * connected, every subscriber queues.
 */
export interface SessionPolicy {
  subscriptionGuard: SubscriptionGuard
  isConnected: (clientId: string) => boolean
  routing: RoutingHook | undefined
}

export function createSessionPolicy (): SessionPolicy {
  return { subscriptionGuard: () => true, isConnected: () => false, routing: undefined }
}
