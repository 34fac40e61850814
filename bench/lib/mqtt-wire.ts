/**
 * The few MQTT 3.1.1 packets the load generator writes on its hot path,
 * encoded by hand so that encoding costs next to nothing: PUBLISH (section
 * 3.3), PUBACK (3.4) and PINGREQ (3.12). CONNECT and SUBSCRIBE go through
 * mqtt-packet (see lean-client.ts); they are not on a hot path.
 */

/** Bytes the Remaining Length field takes for `length` (section 2.2.3). */
export function remainingLengthBytes (length: number): number {
  if (length < 128) return 1
  if (length < 16_384) return 2
  if (length < 2_097_152) return 3
  return 4
}

function writeRemainingLength (buf: Buffer, offset: number, length: number): number {
  let value = length
  do {
    let byte = value % 128
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    buf[offset++] = byte
  } while (value > 0)
  return offset
}

/** A PUBLISH encoder for one topic: the topic bytes are prepared once. */
export class PublishEncoder {
  readonly #topic: Buffer
  readonly #qos: 0 | 1
  readonly #payloadBytes: number
  readonly #packetBytes: number
  readonly #headerBytes: number

  constructor (topic: string, qos: 0 | 1, payloadBytes: number) {
    this.#topic = Buffer.from(topic, 'utf8')
    this.#qos = qos
    this.#payloadBytes = payloadBytes
    const remaining = 2 + this.#topic.length + (qos > 0 ? 2 : 0) + payloadBytes
    this.#headerBytes = 1 + remainingLengthBytes(remaining)
    this.#packetBytes = this.#headerBytes + remaining
  }

  get packetBytes (): number { return this.#packetBytes }

  /**
   * Encodes `count` packets into one buffer. `fill(payload, i)` writes the
   * payload of the i-th packet in place; `packetId(i)` gives its id (QoS 1).
   */
  encodeBatch (count: number, fill: (payload: Buffer, i: number) => void, packetId?: (i: number) => number): Buffer {
    const buf = Buffer.allocUnsafe(this.#packetBytes * count)
    const remaining = this.#packetBytes - this.#headerBytes
    for (let i = 0; i < count; i++) {
      let o = i * this.#packetBytes
      buf[o++] = 0x30 | (this.#qos << 1)
      o = writeRemainingLength(buf, o, remaining)
      buf.writeUInt16BE(this.#topic.length, o)
      o += 2
      this.#topic.copy(buf, o)
      o += this.#topic.length
      if (this.#qos > 0) {
        buf.writeUInt16BE(packetId === undefined ? 1 : packetId(i), o)
        o += 2
      }
      const payload = buf.subarray(o, o + this.#payloadBytes)
      payload.fill(0)
      fill(payload, i)
    }
    return buf
  }
}

/** PUBACK for each id, in one buffer. */
export function encodePubacks (ids: readonly number[]): Buffer {
  const buf = Buffer.allocUnsafe(4 * ids.length)
  for (let i = 0; i < ids.length; i++) {
    const o = i * 4
    buf[o] = 0x40
    buf[o + 1] = 0x02
    buf.writeUInt16BE(ids[i] as number, o + 2)
  }
  return buf
}

export const PINGREQ = Buffer.from([0xc0, 0x00])
export const DISCONNECT = Buffer.from([0xe0, 0x00])

/** Bench payload layout: seq (u32), source (u16), 2 spare bytes, send time in ms (f64, performance.now()). */
export const PAYLOAD_HEADER_BYTES = 16

export function writeStamp (payload: Buffer, seq: number, source: number, sentAt: number): void {
  payload.writeUInt32BE(seq, 0)
  payload.writeUInt16BE(source, 4)
  payload.writeDoubleBE(sentAt, 8)
}

export function readSeq (payload: Buffer): number { return payload.readUInt32BE(0) }
export function readSource (payload: Buffer): number { return payload.readUInt16BE(4) }
export function readSentAt (payload: Buffer): number { return payload.readDoubleBE(8) }
