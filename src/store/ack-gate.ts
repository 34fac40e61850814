import { TransientMap } from './transient-map.js'

/** A QoS 1 publish whose publisher's PUBACK waits for AckGate.release(). */
export interface ExpectedAck {
  readonly brokerId: string
  /** set when the message's record waits for its recipients' acknowledgements (FreshQueue.awaitAcks) */
  safe?: Promise<void>
}

/**
 * The publishes whose publisher's PUBACK waits, by brokerCounter. aedes 1.2
 * writes PUBACK before a QoS 1 message reaches the store; the broker announces
 * the publish (expect), runs it, and sends the PUBACK once what release()
 * returns has settled (broker/hooks.ts). While the publish is announced, the
 * store may hold the message's record back for its recipients'
 * acknowledgements and set `safe` to what the publisher waits for instead.
 */
export class AckGate {
  readonly #expected = new TransientMap<number, ExpectedAck>()

  expect (packet: { brokerId: string, brokerCounter: number }): void {
    this.#expected.set(packet.brokerCounter, { brokerId: packet.brokerId })
  }

  /** The announced publish this packet is, if it is one (counters are per broker id). */
  of (packet: { brokerId: string, brokerCounter: number }): ExpectedAck | undefined {
    const expected = this.#expected.get(packet.brokerCounter)
    return expected?.brokerId === packet.brokerId ? expected : undefined
  }

  /** The publish is done: what its PUBACK still waits for, or undefined when nothing (or it was not announced). */
  release (packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined {
    const expected = this.of(packet)
    if (expected === undefined) return undefined
    this.#expected.delete(packet.brokerCounter)
    return expected.safe
  }
}
