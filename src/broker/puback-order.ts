import type { Aedes, Client, PublishPacket } from 'aedes'
import { identify, interceptPublish } from './aedes-internals.js'

/** The session store's acknowledgement gate (SessionStore). */
export interface AcknowledgementGate {
  expectAcknowledgement (packet: { brokerId: string, brokerCounter: number }): void
  safeToAck (packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined
}

export interface PubackOrder {
  /** Runs a QoS 1 publish in full, then answers `callback` (aedes' authorizePublish) when its PUBACK may go. */
  publishBeforeAck (client: Client, packet: PublishPacket, callback: (error: Error | null) => void): void
  /**
   * A refused publish acknowledged and delivered to nobody (the `drop` policy): aedes' own publish
   * of it is skipped, and `callback` waits for the client's earlier PUBACKs [MQTT-4.6.0-2].
   */
  drop (client: Client, packet: PublishPacket, callback: (error: Error | null) => void): void
}

/**
 * aedes 1.2 sends PUBACK and only then runs the publish pipeline that writes
 * the message to subscribers' queues (lib/handlers/publish.js), so a crash
 * in between loses an acknowledged message. authorizePublish runs before the
 * PUBACK: the pipeline runs there, and aedes' own publish of the packet after
 * the PUBACK is let through as done. The message goes to connected
 * subscribers at once; the PUBACK waits until it is in LevelDB or all its
 * recipients have acknowledged it (SessionStore.safeToAck), and goes out in
 * the order the PUBLISHes came [MQTT-4.6.0-2]. A crash before the PUBACK
 * loses nothing: the publisher sends the message again.
 */
export function orderPubacks (broker: Aedes, gate: AcknowledgementGate): PubackOrder {
  /** Each client's PUBACKs that wait, in PUBLISH order: one goes once it and all before it may. */
  const waiting = new WeakMap<Client, WaitingAck[]>()
  const publish = interceptPublish(broker, takeHandled)

  /** Answers the waits at the head of the client's line that may go. */
  function release (line: WaitingAck[]): void {
    while (line.length > 0 && (line[0] as WaitingAck).ready) {
      const ack = line.shift() as WaitingAck
      ack.callback(ack.error)
    }
  }

  /** `callback` once `safe` has settled (now if undefined) and every earlier wait of the client has been answered. */
  function inOrder (client: Client, safe: Promise<void> | undefined, callback: (error: Error | null) => void): void {
    let line = waiting.get(client)
    if (safe === undefined && (line === undefined || line.length === 0)) {
      callback(null)
      return
    }
    if (line === undefined) waiting.set(client, line = [])
    const ack: WaitingAck = { ready: safe === undefined, error: null, callback }
    line.push(ack)
    if (safe === undefined) return
    const queue = line
    safe.then(() => {
      ack.ready = true
      release(queue)
    }, (failed: unknown) => {
      ack.ready = true
      ack.error = failed as Error
      release(queue)
    })
  }

  return {
    drop (client, packet, callback) {
      markHandled(packet)
      inOrder(client, undefined, callback)
    },
    publishBeforeAck (client, packet, callback) {
      // aedes-packet keeps a brokerId and brokerCounter it is given: the store knows the message by them
      const identified = identify(broker, packet)
      gate.expectAcknowledgement(identified)
      markHandled(packet)
      publish(packet, client, (err) => {
        const safe = gate.safeToAck(identified)
        if (err != null) {
          callback(err)
          return
        }
        // after this client's earlier PUBACKs and once the message is safe
        inOrder(client, safe, callback)
      })
    },
  }
}

/**
 * Marks a publish aedes' handler must not run: already run by publishBeforeAck,
 * or dropped. A mark on the packet rather than a broker-lifetime WeakSet: a
 * WeakSet that gains and loses an entry per message reallocates its hash table
 * in old space (as a Map does, store/transient-map.ts), and the latency bench's
 * Herald promoted 0.32 MB/s of such garbage, which lengthened every scavenge
 * (median 1.25 against 0.9 ms) until a full collection. The mark is set back to
 * false rather than deleted, so every publish packet keeps one shape.
 */
const HANDLED = Symbol('herald.handledPublish')

type MarkablePacket = PublishPacket & { [HANDLED]?: boolean }

function markHandled (packet: PublishPacket): void {
  (packet as MarkablePacket)[HANDLED] = true
}

/** Whether the packet was marked handled; clears the mark, so aedes skips it once. */
function takeHandled (packet: PublishPacket): boolean {
  const markable = packet as MarkablePacket
  if (markable[HANDLED] !== true) return false
  markable[HANDLED] = false
  return true
}

/** A PUBACK that waits: for its message to be safe (`ready`), and for the PUBACKs before it. */
interface WaitingAck {
  ready: boolean
  error: Error | null
  readonly callback: (error: Error | null) => void
}
