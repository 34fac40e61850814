import { HeraldError } from '../errors/index.js'

/**
 * Bytes of the MQTT 3.1.1 PUBLISH packet that carries `payloadBytes` on `topic`
 * (section 3.3): fixed header (one byte, then 1–4 bytes of remaining length,
 * section 2.2.3), topic name (2-byte length + UTF-8), packet identifier when
 * QoS > 0, payload. A subscriber gets min(publish QoS, subscription QoS)
 * [MQTT-3.8.4-6], so no delivered copy is larger than the packet published.
 */
export function publishPacketBytes (topic: string, payloadBytes: number, qos: 0 | 1 | 2): number {
  const remaining = 2 + Buffer.byteLength(topic, 'utf8') + (qos > 0 ? 2 : 0) + payloadBytes
  return 1 + remainingLengthBytes(remaining) + remaining
}

function remainingLengthBytes (length: number): number {
  if (length < 128) return 1
  if (length < 16_384) return 2
  if (length < 2_097_152) return 3
  return 4
}

/**
 * An HTTP publish or push becomes one MQTT packet; devices refuse packets over
 * `limits.maxPacketBytes` as the broker does, so a message that would make a
 * larger one is refused before anything is published or relayed.
 */
export function assertFitsInPacket (topic: string, payloadBytes: number, qos: 0 | 1 | 2, maxPacketBytes: number): void {
  const bytes = publishPacketBytes(topic, payloadBytes, qos)
  if (bytes > maxPacketBytes) {
    throw new HeraldError('PAYLOAD_TOO_LARGE', `the MQTT packet would take ${bytes} bytes, more than limits.maxPacketBytes (${maxPacketBytes})`)
  }
}
