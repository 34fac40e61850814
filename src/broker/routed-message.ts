/**
 * A QoS>0 message on its way into persistent sessions' queues, as the relay
 * sees it: its identity (the broker id and counter the session store keeps it
 * by), topic and payload. The store's packets have this shape, so a router is
 * handed them as they are.
 */
export interface RoutedMessage {
  readonly brokerId: string
  readonly brokerCounter: number
  readonly topic: string
  readonly payload: Buffer
}

/**
 * Sees a routed message with the persistent subscriptions it matched and
 * returns those that should queue it (push-only installations keep no queue):
 * at once when nothing is relayed (nearly every message), else once the
 * relay jobs are written.
 */
export type MessageRouter = <S extends { readonly clientId: string }>(subs: S[], message: RoutedMessage) => S[] | Promise<S[]>
