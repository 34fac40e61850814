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
  /** Publishes aedes' handler must not run: already run by publishBeforeAck, or dropped. */
  const handled = new WeakSet<PublishPacket>()
  /** Each client's last PUBACK wait: the next one waits for it too. */
  const ackTails = new WeakMap<Client, Promise<unknown>>()
  const publish = interceptPublish(broker, (packet) => handled.delete(packet))

  return {
    drop (client, packet, callback) {
      handled.add(packet)
      const previous = ackTails.get(client)
      if (previous === undefined) {
        callback(null)
        return
      }
      previous.then(() => callback(null), (failed: unknown) => callback(failed as Error))
    },
    publishBeforeAck (client, packet, callback) {
      // aedes-packet keeps a brokerId and brokerCounter it is given: the store knows the message by them
      const identified = identify(broker, packet)
      gate.expectAcknowledgement(identified)
      handled.add(packet)
      publish(packet, client, (err) => {
        const safe = gate.safeToAck(identified)
        if (err != null) {
          callback(err)
          return
        }
        const previous = ackTails.get(client)
        if (safe === undefined && previous === undefined) {
          callback(null)
          return
        }
        // after this client's earlier PUBACKs and once the message is safe; one promise when there is one wait
        const inOrder = previous === undefined ? safe as Promise<void> : safe === undefined ? previous : Promise.all([previous, safe])
        ackTails.set(client, inOrder)
        inOrder.then(() => {
          // the last wait of this client is over: the next PUBACK need not wait for anything before it
          if (ackTails.get(client) === inOrder) ackTails.delete(client)
          callback(null)
        }, (failed: unknown) => callback(failed as Error))
      })
    },
  }
}
