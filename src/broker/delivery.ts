import type { Client, PublishPacket } from 'aedes'
import { covers } from '../acl/topic-match.js'

/**
 * One copy of each message per client, at the highest QoS granted to the
 * client's subscriptions that match it, never above the message's own QoS.
 *
 * [MQTT-3.3.5-1] a message matching several of a client's subscriptions is
 * delivered respecting the maximum QoS of all of them. aedes 1.2 calls the
 * delivery function of every matching subscription, and relies on its
 * per-client brokerCounter check to drop the copies after the first, which
 * Herald turns off (hooks.ts `disableCounterDedupe`: with an asynchronous store
 * messages are emitted out of counter order). It also caps the QoS by the
 * subscription whose filter equals the topic name (lib/client.js
 * `deliverQoS`), so a wildcard subscription granted QoS 1 received QoS 2
 * messages at QoS 2.
 *
 * mqemitter hands one message to all the subscriptions it matches in one
 * synchronous loop, so the copies of a message reach a client one right after
 * the other: remembering the last message delivered is enough to drop the
 * others, in whatever order messages come. Retained messages sent on
 * SUBSCRIBE carry no broker id and are never dropped.
 */

/** aedes' per-connection delivery functions and granted subscriptions (lib/client.js, lib/handlers/subscribe.js). */
interface DeliveringClient {
  deliver0: Deliver
  deliverQoS: Deliver
  readonly subscriptions: Record<string, { qos: number } | undefined>
}
type Deliver = (packet: DeliveredPacket, done: () => void) => void
/** The copy of a message aedes makes for each subscription (aedes-packet). */
type DeliveredPacket = PublishPacket & { brokerId?: string | null, brokerCounter?: number }

export function deliverOncePerMessage (client: Client): void {
  const internals = client as unknown as DeliveringClient
  const deliver0 = internals.deliver0
  const deliverQoS = internals.deliverQoS
  let lastBrokerId: string | null | undefined
  let lastCounter: number | undefined

  const deliver: Deliver = (packet, done) => {
    if (packet.brokerId != null) {
      if (packet.brokerId === lastBrokerId && packet.brokerCounter === lastCounter) {
        // the same message again, through an overlapping subscription
        setImmediate(done)
        return
      }
      lastBrokerId = packet.brokerId
      lastCounter = packet.brokerCounter
    }
    const qos = packet.qos === 0 ? 0 : Math.min(packet.qos, grantedQos(internals.subscriptions, packet.topic))
    packet.qos = qos as PublishPacket['qos']
    if (qos === 0) {
      deliver0(packet, done)
      return
    }
    const exact = internals.subscriptions[packet.topic]
    if (exact === undefined || exact.qos >= qos) {
      deliverQoS(packet, done)
      return
    }
    // aedes would cap this copy at the QoS of the exact-topic subscription, read in the setImmediate
    // that deliverQoS schedules; immediates run in the order they were scheduled, so the one before
    // and the one after it bracket that read, and nothing else runs in between.
    const granted = exact.qos
    setImmediate(() => { exact.qos = qos })
    deliverQoS(packet, done)
    setImmediate(() => { exact.qos = granted })
  }
  internals.deliver0 = deliver
  internals.deliverQoS = deliver
}

/**
 * The highest QoS granted to a subscription of the client that matches the topic
 * (0 when none does: a message is only delivered through a subscription, so that
 * means the subscription just went away).
 */
export function grantedQos (subscriptions: Record<string, { qos: number } | undefined>, topic: string): number {
  let granted = 0
  for (const filter in subscriptions) {
    const qos = subscriptions[filter]?.qos ?? 0
    if (qos > granted && covers(filter, topic)) {
      granted = qos
      if (granted === 2) break
    }
  }
  return granted
}

/**
 * A message from a persistent session's queue was stored at its publisher's
 * QoS; it goes out at no more than the subscriptions that queued it were granted
 * (only QoS 1 and 2 subscriptions queue messages, so the cap is from 2 to 1).
 */
export function capQueuedQos (client: Client, packet: PublishPacket): void {
  if (packet.qos !== 2) return
  const granted = grantedQos((client as unknown as DeliveringClient).subscriptions, packet.topic)
  if (granted === 1) packet.qos = 1
}
