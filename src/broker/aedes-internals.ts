import type { Aedes, Client, PublishPacket } from 'aedes'
import AedesPacket from 'aedes-packet'
import type { OutboundMessage } from './broker-port.js'

/**
 * Every touch of aedes' private fields, and every cast of its packets and
 * clients, in one file: an aedes upgrade checks these functions (and the hook
 * signatures in hooks.ts) against the new lib/aedes.js, lib/client.js and
 * lib/handlers/. Each one names the aedes 1.2 code it depends on.
 */

/** A message with the identity aedes-packet gives it: the session store knows it by these. */
export type IdentifiedPacket = PublishPacket & { brokerId: string, brokerCounter: number, payload: Buffer }

/** aedes' publish as its handlers call it (the typings know only `publish(packet, done)`). */
export type AedesPublish = (packet: PublishPacket, client?: Client | null | ((error?: Error | null) => void), done?: (error?: Error | null) => void) => void

/** aedes' broker id (lib/aedes.js `this.id`), which aedes-packet copies into every message; set before listen(). */
export function setBrokerId (broker: Aedes, id: string): void {
  (broker as unknown as { id: string }).id = id
}

/** The next of aedes' per-broker message counters (lib/aedes.js `this.counter`, aedes-packet `++broker.counter`). */
export function nextBrokerCounter (broker: Aedes): number {
  return ++(broker as unknown as { counter: number }).counter
}

/** Gives a message its broker id and counter now: aedes-packet keeps those it is given. */
export function identify (broker: Aedes, packet: PublishPacket): IdentifiedPacket {
  const identified = packet as IdentifiedPacket
  identified.brokerId = (broker as unknown as { id: string }).id
  identified.brokerCounter = nextBrokerCounter(broker)
  return identified
}

/** A packet as aedes makes one for a client (aedes-packet), with its identity. */
export function newPacket (broker: Aedes, message: OutboundMessage): IdentifiedPacket {
  return new AedesPacket({ cmd: 'publish', topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain }, broker) as unknown as IdentifiedPacket
}

/** Sends a packet to one client: aedes' Client#publish queues it first when the session is persistent. */
export async function publishToClient (client: Client, packet: IdentifiedPacket): Promise<void> {
  await new Promise<void>((resolve, reject) => client.publish(packet as never, (err) => err ? reject(err) : resolve()))
}

/**
 * Removes one live subscription. aedes' Client#unsubscribe wants topic strings
 * (its types say Subscription objects): an object matches nothing and leaves
 * the live subscription in place. No messageId: no UNSUBACK is written.
 */
export async function unsubscribeClient (client: Client, topic: string): Promise<void> {
  await new Promise<void>((resolve, reject) => client.unsubscribe({ cmd: 'unsubscribe', unsubscriptions: [topic] }, (err) => err ? reject(err) : resolve()))
}

/** The will aedes' Client is about to publish while it closes (lib/client.js `close`). */
export function willOf (client: Client): PublishPacket | null | undefined {
  return (client as unknown as { will?: PublishPacket | null }).will
}

/** Whether aedes has written the connection's CONNACK (lib/client.js `connackSent`, set in lib/handlers/connect.js). */
export function connackSent (client: Client): boolean {
  return (client as unknown as { connackSent: boolean }).connackSent
}

/** A client's granted subscriptions, by filter (lib/handlers/subscribe.js `client.subscriptions`). */
export function clientSubscriptions (client: Client): Record<string, { qos: number } | undefined> {
  return (client as unknown as { subscriptions: Record<string, { qos: number } | undefined> }).subscriptions
}

/** The client aedes put on its connection (lib/client.js `conn.client`) and the error the stream was destroyed with. */
export interface ClosingConnection { client?: Client, errored?: Error | null }

/** A connection stream that knows its peer (transport/guarded-stream.ts). */
interface Addressed { remoteAddress?: string | undefined, transport?: string }

export function remoteAddress (client: Client): string | undefined {
  return (client.conn as Addressed).remoteAddress
}

/** `tcp`, `tls` or `websocket` (transport/guarded-stream.ts); undefined for a stream Herald did not wrap (tests). */
export function transportOf (client: Client): string | undefined {
  return (client.conn as Addressed).transport
}

/** Whether the client ended its connection with a DISCONNECT packet (lib/handlers/index.js sets `_disconnected`). */
export function sentDisconnect (client: Client): boolean {
  return (client as unknown as { _disconnected?: boolean })._disconnected === true
}

/** aedes' per-connection delivery functions (lib/client.js `deliver0`, `deliverQoS`). */
export type Deliver = (packet: DeliveredPacket, done: () => void) => void
/** The copy of a message aedes makes for each subscription (aedes-packet). */
export type DeliveredPacket = PublishPacket & { brokerId?: string | null, brokerCounter?: number }

/**
 * Replaces both of a client's delivery functions with one, built from aedes'
 * originals: `replace(deliver0, deliverQoS)`.
 */
export function replaceDelivery (client: Client, replace: (deliver0: Deliver, deliverQoS: Deliver) => Deliver): void {
  const internals = client as unknown as { deliver0: Deliver, deliverQoS: Deliver }
  const deliver = replace(internals.deliver0, internals.deliverQoS)
  internals.deliver0 = deliver
  internals.deliverQoS = deliver
}

/**
 * Lets `skip` decide, for each publish aedes' handlers start, whether it has
 * been done already: a skipped publish is reported done at once. Returns
 * aedes' own publish, to run a publish in full.
 */
export function interceptPublish (broker: Aedes, skip: (packet: PublishPacket) => boolean): AedesPublish {
  const publish = broker.publish.bind(broker) as unknown as AedesPublish
  ;(broker as unknown as { publish: AedesPublish }).publish = (packet, client, done) => {
    if (skip(packet)) {
      (typeof client === 'function' ? client : done)?.(null)
      return
    }
    publish(packet, client, done)
  }
  return publish
}

/**
 * aedes drops a delivery as a duplicate unless its brokerCounter is higher than
 * the last one this client got from the same broker (lib/client.js `dedupe`),
 * which assumes messages are emitted in counter order. With an asynchronous
 * store (LevelDB) concurrent QoS1 publishes finish persisting, and are emitted,
 * out of order, so acknowledged messages were silently dropped: 15 of 3,000 per
 * subscriber on bare aedes 1.2 + aedes-persistence-level 9, 35 with Herald's
 * write before PUBACK. The dedupe only matters for duplicates between brokers
 * of a cluster; a single Herald process has none, so every counter passes.
 */
const neverSeen: Record<string, number> = new Proxy(Object.create(null) as Record<string, number>, {
  get: () => 0,
  set: () => true,
  deleteProperty: () => true,
})

export function disableCounterDedupe (client: Client): void {
  (client as unknown as { duplicates: Record<string, number> }).duplicates = neverSeen
}

/** What Herald touches of mqtt-packet's parser (aedes' `client._parser`). */
interface ParserInternals {
  settings: { protocolVersion?: number, bridgeMode?: boolean }
  _list: { length: number, constructor: { BufferList?: new () => BufferListInternals } }
}
interface BufferListInternals { append (list: unknown): unknown }

/** The part of a CONNECT packet mqtt-packet's parser reads after CONNECT, one object per combination. */
const parserSettings = new Map<string, ParserInternals['settings']>()

/**
 * Two things of mqtt-packet 9's parser outlive CONNECT for no use: `settings`
 * is the whole CONNECT packet (it only reads protocolVersion and bridgeMode
 * from it), so the token in the password stayed in memory, with the socket
 * chunk it was sliced from, as long as the connection; and the input buffer is
 * a BufferListStream, a full Duplex stream, where the plain BufferList whose
 * methods it borrows (bl) is all the parser calls. ~1.7 kB per connection.
 * Runs between two reads (after an await), never inside parse().
 */
export function slimParser (client: Client): void {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser
  if (parser === undefined) return
  const { protocolVersion, bridgeMode } = parser.settings
  const key = `${protocolVersion}:${bridgeMode}`
  let settings = parserSettings.get(key)
  if (settings === undefined) parserSettings.set(key, settings = Object.freeze({ protocolVersion, bridgeMode }))
  parser.settings = settings
  const PlainList = parser._list.constructor.BufferList
  if (PlainList === undefined) return
  const list = new PlainList()
  // bytes of a packet that has not fully arrived yet move over
  if (parser._list.length > 0) list.append(parser._list)
  parser._list = list as unknown as ParserInternals['_list']
}

/** What the connection holds that the peer has not read (transport/guarded-stream.ts), or its write buffer. */
export function outgoingBytes (client: Client): number {
  const conn = client.conn as { readonly outgoingBytes?: number, readonly writableLength?: number }
  return conn.outgoingBytes ?? conn.writableLength ?? 0
}
