/**
 * Follows MQTT fixed headers (MQTT 3.1.1 section 2.2) across a byte stream and
 * reports the first packet that is malformed or larger than the limit, before
 * its body is buffered anywhere. mqtt-packet's parser has no size limit and
 * would buffer a packet of up to 256 MB.
 */
export class FrameLimit {
  readonly #maxPacketBytes: number
  #state: 'header' | 'length' | 'body' = 'header'
  #lengthBytes = 0
  #length = 0
  #multiplier = 1
  #remaining = 0

  constructor (maxPacketBytes: number) {
    this.#maxPacketBytes = maxPacketBytes
  }

  /** Returns an Error describing the violation, or null while the stream is fine. */
  feed (chunk: Uint8Array): Error | null {
    let i = 0
    while (i < chunk.length) {
      switch (this.#state) {
        case 'header':
          i++
          this.#state = 'length'
          this.#lengthBytes = 0
          this.#length = 0
          this.#multiplier = 1
          break
        case 'length': {
          const byte = chunk[i++] as number
          this.#length += (byte & 0x7f) * this.#multiplier
          this.#multiplier *= 128
          this.#lengthBytes++
          if ((byte & 0x80) !== 0) {
            // the remaining length takes at most four bytes
            if (this.#lengthBytes === 4) return new Error('malformed packet: remaining length longer than 4 bytes')
            break
          }
          const total = 1 + this.#lengthBytes + this.#length
          if (total > this.#maxPacketBytes) {
            return new Error(`packet of ${total} bytes exceeds limits.maxPacketBytes (${this.#maxPacketBytes})`)
          }
          this.#remaining = this.#length
          this.#state = this.#remaining > 0 ? 'body' : 'header'
          break
        }
        case 'body': {
          const take = Math.min(this.#remaining, chunk.length - i)
          i += take
          this.#remaining -= take
          if (this.#remaining === 0) this.#state = 'header'
          break
        }
      }
    }
    return null
  }
}
