import type { Client, PublishPacket } from 'aedes'
import { covers } from '../acl/topic-match.js'
import { clientSubscriptions, connackSent, outgoingBytes, replaceDelivery, type Deliver, type DeliveredPacket } from './aedes-internals.js'

/**
 * One copy of each message per client, at the highest QoS granted to the
 * client's subscriptions that match it, never above the message's own QoS.
 *
 * [MQTT-3.3.5-1] a message matching several of a client's subscriptions is
 * delivered respecting the maximum QoS of all of them. aedes 1.2 calls the
 * delivery function of every matching subscription, and relies on its
 * per-client brokerCounter check to drop the copies after the first, which
 * Herald turns off (aedes-internals.ts `disableCounterDedupe`: with an asynchronous store
 * messages are emitted out of counter order). It also caps the QoS by the
 * subscription whose filter equals the topic name (lib/client.js, its
 * QoS>0 delivery function), so a wildcard subscription granted QoS 1 received QoS 2
 * messages at QoS 2.
 *
 * mqemitter hands one message to all the subscriptions it matches in one
 * synchronous loop, so the copies of a message reach a client one right after
 * the other: remembering the last message delivered is enough to drop the
 * others, in whatever order messages come. Retained messages sent on
 * SUBSCRIBE carry no broker id and are never dropped.
 *
 * It is also where a slow connection is bounded (DeliveryLimits).
 */

/**
 * How far a connection may fall behind. One that does not read its socket
 * must not hold anybody else back: aedes waits for a subscriber's socket to
 * drain before it calls a message delivered, and the publisher's next message
 * waits for that (mqemitter), so one stalled device stopped a topic, the
 * publisher's other topics and HTTP publishes to them.
 */
export interface DeliveryLimits {
  /** bytes written to the connection and not yet taken by the peer */
  readonly maxOutgoingBytes: number
  /** messages handed to the connection whose write has not completed, counted while it is backed up (BACKED_UP_BYTES) */
  readonly maxOutgoingMessages: number
  /** a message was not written to a connection past a limit: QoS 0 and clean sessions' messages are dropped */
  onDropped (qos: number): void
  /** a persistent session past a limit: its messages wait in its queue, and the connection is closed so it reconnects and drains it */
  onBehind (client: Client): void
}

/** Deliveries that came for a connection before its CONNACK went out, and where they go then (releaseAfterConnack). */
const heldForConnack = new WeakMap<Client, { readonly send: (packet: DeliveredPacket) => void, readonly packets: DeliveredPacket[] }>()

export function deliverOncePerMessage (client: Client, limits: DeliveryLimits): void {
  replaceDelivery(client, (sendQos0, sendQos12) => holdUntilConnack(client, limits, deliverOnce(client, limits, sendQos0, sendQos12)))
}

/**
 * Call when aedes has written a connection's CONNACK: the messages that came
 * for it meanwhile go out now, before its stored queue.
 */
export function releaseAfterConnack (client: Client): void {
  const held = heldForConnack.get(client)
  if (held === undefined) return
  heldForConnack.delete(client)
  for (const packet of held.packets) held.send(packet)
}

/**
 * [MQTT-3.2.0-1] the first packet a server sends is the CONNACK. aedes 1.2
 * subscribes a resumed session's filters (restoreSubs) before it writes the
 * CONNACK, and delivers whatever is published in between at once: with a
 * session store in Redis that is milliseconds, and a device taken over from
 * another cluster node under load got PUBLISH packets before its CONNACK
 * (mqtt.js then never saw a CONNACK). Such messages wait, in order, for the
 * CONNACK (at most maxOutgoingMessages of them; a persistent session's QoS 1
 * messages are in its queue anyway).
 */
function holdUntilConnack (client: Client, limits: DeliveryLimits, send: (packet: DeliveredPacket) => void): Deliver {
  return (packet, done) => {
    // the message counts as delivered once it is handed to the connection: its write may wait for the peer, nobody else does
    callSoon(done)
    if (connackSent(client)) {
      send(packet)
      return
    }
    let held = heldForConnack.get(client)
    if (held === undefined) heldForConnack.set(client, held = { send, packets: [] })
    if (held.packets.length < limits.maxOutgoingMessages) held.packets.push(packet)
    else limits.onDropped(packet.qos)
  }
}

/** Delivery callbacks waiting for the next check phase, in the order they came. */
let dueSoon: Array<() => void> = []

/**
 * Calls `done` in the next check phase, as setImmediate(done) would, with one
 * Immediate per event-loop turn for all of them: a fan-out hands out a
 * delivery per subscriber, and an Immediate each was a measurable share of a
 * QoS 0 message's cost.
 */
function callSoon (done: () => void): void {
  if (dueSoon.push(done) === 1) setImmediate(callDue)
}

function callDue (): void {
  const due = dueSoon
  // callbacks asked for while these run wait for the next turn, as their own Immediates would
  dueSoon = []
  for (const done of due) done()
}

/** aedes' two delivery functions, sendQos0 and sendQos12, behind one that delivers once and bounds the connection. */
function deliverOnce (client: Client, limits: DeliveryLimits, sendQos0: Deliver, sendQos12: Deliver): (packet: DeliveredPacket) => void {
  let lastBrokerId: string | null | undefined
  let lastCounter: number | undefined
  /** deliveries handed to aedes whose write has not completed */
  let writing = 0
  const written = (): void => { writing-- }

  return (packet) => {
    if (packet.brokerId != null) {
      // the same message again, through an overlapping subscription
      if (packet.brokerId === lastBrokerId && packet.brokerCounter === lastCounter) return
      lastBrokerId = packet.brokerId
      lastCounter = packet.brokerCounter
    }
    let qos = 0
    // the subscription to the topic itself, if any: it may settle the QoS, and aedes caps a QoS 1 or 2 copy by it
    let exact: { qos: number } | undefined
    if (packet.qos > 0) {
      const subscriptions = clientSubscriptions(client)
      exact = subscriptions[packet.topic]
      qos = deliveredQos(packet, subscriptions, exact)
    }
    const backlog = outgoingBytes(client)
    if (backlog >= limits.maxOutgoingBytes || (backlog >= BACKED_UP_BYTES && writing >= limits.maxOutgoingMessages)) {
      // a persistent session's QoS 1 and 2 messages are in its queue already
      if (qos > 0 && !client.clean) limits.onBehind(client)
      else limits.onDropped(qos)
      return
    }
    writing++
    packet.qos = qos as PublishPacket['qos']
    if (qos === 0) {
      sendQos0(packet, written)
      return
    }
    if (exact === undefined || exact.qos >= qos) {
      sendQos12(packet, written)
      return
    }
    // aedes would cap this copy at the QoS of the exact-topic subscription, read in the setImmediate
    // that sendQos12 schedules; immediates run in the order they were scheduled, so the one before
    // and the one after it bracket that read, and nothing else runs in between.
    const granted = exact.qos
    setImmediate(() => { exact.qos = qos })
    sendQos12(packet, written)
    setImmediate(() => { exact.qos = granted })
  }
}

/**
 * A connection holding this much its peer has not read is backed up, and only
 * then does the message count apply: the messages of one busy event-loop turn
 * are all handed over before the first of them is written, so a healthy
 * connection may briefly have thousands in hand.
 */
const BACKED_UP_BYTES = 64 * 1024

/**
 * The QoS a message goes out at: its own, capped by the highest QoS granted to
 * the client's subscriptions that match it. A message no subscription matches
 * was sent to this client directly (BrokerPort.deliverTo, aedes Client#publish)
 * and keeps its QoS.
 */
function deliveredQos (packet: PublishPacket, subscriptions: Record<string, { qos: number } | undefined>, exact: { qos: number } | undefined): number {
  // a subscription to the topic itself granted at least the message's QoS settles it without going over
  // every filter: the highest grant that matches is at least that, and the message's own QoS caps it
  if (exact !== undefined && exact.qos >= packet.qos) return packet.qos
  const granted = grantedQos(subscriptions, packet.topic)
  return granted < 0 ? packet.qos : Math.min(packet.qos, granted)
}

/** The highest QoS granted to a subscription of the client that matches the topic; -1 when none does. */
export function grantedQos (subscriptions: Record<string, { qos: number } | undefined>, topic: string): number {
  let granted = -1
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
  const granted = grantedQos(clientSubscriptions(client), packet.topic)
  if (granted === 1) packet.qos = 1
}
