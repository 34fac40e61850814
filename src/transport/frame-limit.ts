/** Why a FrameLimit stopped a stream: a malformed length, a packet over the limit, or a first packet that is not a CONNECT. */
export type FrameViolation = 'malformed' | 'too_large' | 'not_connect'

export class FrameError extends Error {
  constructor (readonly violation: FrameViolation, message: string) {
    super(message)
  }
}

/** MQTT control packet type of CONNECT (MQTT 3.1.1 section 2.2.1), in the high nibble of the first byte. */
const CONNECT = 1

/**
 * Follows MQTT fixed headers (MQTT 3.1.1 section 2.2) across a byte stream and
 * reports the first packet that is malformed or larger than the limit, before
 * its body is buffered anywhere. mqtt-packet's parser has no size limit and
 * would buffer a packet of up to 256 MB.
 *
 * With `maxConnectBytes`, the first packet is the connection's CONNECT and
 * gets that smaller limit: it must be a CONNECT ([MQTT-3.1.0-1]) and no larger.
 * Before it has arrived nobody is authenticated, so this bounds what an
 * unauthenticated peer can make the broker hold.
 */
export class FrameLimit {
  readonly #maxPacketBytes: number
  #maxConnectBytes: number | undefined
  #state: 'header' | 'length' | 'body' = 'header'
  #lengthBytes = 0
  #length = 0
  #multiplier = 1
  #remaining = 0

  constructor (maxPacketBytes: number, maxConnectBytes?: number) {
    this.#maxPacketBytes = maxPacketBytes
    if (maxConnectBytes !== undefined) this.#maxConnectBytes = Math.min(maxConnectBytes, maxPacketBytes)
  }

  /** True until the whole first packet (the CONNECT) has gone by, when a CONNECT limit was given. */
  get awaitingConnect (): boolean {
    return this.#maxConnectBytes !== undefined
  }

  /** Returns an Error describing the violation, or null while the stream is fine. */
  feed (chunk: Uint8Array): FrameError | null {
    let i = 0
    while (i < chunk.length) {
      switch (this.#state) {
        case 'header': {
          const type = (chunk[i++] as number) >> 4
          if (this.#maxConnectBytes !== undefined && type !== CONNECT) {
            return new FrameError('not_connect', 'the first packet must be a CONNECT [MQTT-3.1.0-1]')
          }
          this.#state = 'length'
          this.#lengthBytes = 0
          this.#length = 0
          this.#multiplier = 1
          break
        }
        case 'length': {
          const byte = chunk[i++] as number
          this.#length += (byte & 0x7f) * this.#multiplier
          this.#multiplier *= 128
          this.#lengthBytes++
          if ((byte & 0x80) !== 0) {
            // the remaining length takes at most four bytes
            if (this.#lengthBytes === 4) return new FrameError('malformed', 'malformed packet: remaining length longer than 4 bytes')
            break
          }
          const total = 1 + this.#lengthBytes + this.#length
          if (this.#maxConnectBytes !== undefined && total > this.#maxConnectBytes) {
            return new FrameError('too_large', `CONNECT of ${total} bytes exceeds limits.maxConnectBytes (${this.#maxConnectBytes})`)
          }
          if (total > this.#maxPacketBytes) {
            return new FrameError('too_large', `packet of ${total} bytes exceeds limits.maxPacketBytes (${this.#maxPacketBytes})`)
          }
          this.#remaining = this.#length
          if (this.#remaining > 0) this.#state = 'body'
          else this.#packetDone()
          break
        }
        case 'body': {
          const take = Math.min(this.#remaining, chunk.length - i)
          i += take
          this.#remaining -= take
          if (this.#remaining === 0) this.#packetDone()
          break
        }
      }
    }
    return null
  }

  #packetDone (): void {
    this.#state = 'header'
    // the CONNECT is in: later packets get limits.maxPacketBytes
    this.#maxConnectBytes = undefined
  }
}
