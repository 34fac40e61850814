/**
 * The overlapping-subscription cases that the single-node test
 * (test/e2e/overlapping-subscriptions.test.ts) and the cluster test
 * (test/e2e/cluster-subscriptions.test.ts) both run.
 *
 * [MQTT-3.3.5-1] a message matching several of a client's subscriptions is delivered
 * respecting the maximum QoS of all of them, and never above what a subscription was
 * granted (MQTT 3.1.1 section 3.8.4: the QoS of a delivery is the minimum of the
 * message's and the subscription's). Herald sends one copy.
 */

import type { MqttClient, Packet } from 'mqtt'

export type QoS = 0 | 1 | 2
const levels: QoS[] = [0, 1, 2]

export interface OverlapCase {
  readonly name: string
  /** filter suffixes under `users/<user>/ov/` and the QoS each is subscribed with */
  readonly filters: ReadonlyArray<readonly [string, QoS]>
  readonly published: QoS
  readonly clean: boolean
}

/** `#` and `+` at every pair of QoS, one filter alone, an exact filter beside wildcards, persistent sessions. */
export function overlapCases (): OverlapCase[] {
  const cases: OverlapCase[] = []
  for (const wildQos of levels) {
    for (const plusQos of levels) {
      for (const published of levels) {
        cases.push({ name: `# at ${wildQos}, + at ${plusQos}, published at ${published}`, filters: [['#', wildQos], ['+', plusQos]], published, clean: true })
      }
    }
  }
  for (const granted of levels) {
    for (const published of levels) {
      cases.push({ name: `one wildcard at ${granted}, published at ${published}`, filters: [['+', granted]], published, clean: true })
      cases.push({ name: `one exact filter at ${granted}, published at ${published}`, filters: [['t', granted]], published, clean: true })
    }
  }
  // aedes caps a delivery by the exact-topic subscription even when a wildcard one grants more
  cases.push({ name: 'exact at 0 and # at 1, published at 1', filters: [['t', 0], ['#', 1]], published: 1, clean: true })
  cases.push({ name: 'exact at 1 and + at 2, published at 2', filters: [['t', 1], ['+', 2]], published: 2, clean: true })
  // the exact-topic subscription settles the QoS when it grants at least the message's (delivery.ts deliveredQos)
  cases.push({ name: 'exact at 2 and # at 0, published at 1', filters: [['t', 2], ['#', 0]], published: 1, clean: true })
  cases.push({ name: 'persistent: exact at 1 and + at 0, published at 1', filters: [['t', 1], ['+', 0]], published: 1, clean: false })
  for (const published of [1, 2] as const) {
    cases.push({ name: `persistent: # at 2, + at 2, published at ${published}`, filters: [['#', 2], ['+', 2]], published, clean: false })
    cases.push({ name: `persistent: # at 1, + at 2, published at ${published}`, filters: [['#', 1], ['+', 2]], published, clean: false })
  }
  return cases
}

/** The one QoS a case's message is delivered at. */
export const expectedQos = (c: OverlapCase): QoS => Math.min(c.published, Math.max(...c.filters.map(([, qos]) => qos))) as QoS

/**
 * The QoS of every copy of the message `send` publishes to `<prefix>/t`, as the
 * subscriber received them up to the marker `sendMarker` publishes to
 * `<prefix>/marker` afterwards: each copy of a message is on its way to the
 * subscriber before the next message is delivered.
 */
export async function copiesOf (subscriber: MqttClient, prefix: string, send: () => Promise<void>, sendMarker: (topic: string) => Promise<void>): Promise<number[]> {
  const copies: number[] = []
  // the PUBLISH packets as they arrive: mqtt.js emits a QoS 2 message only once its PUBREL has come
  const markerArrived = new Promise<void>((resolve) => {
    const onPacket = (packet: Packet): void => {
      if (packet.cmd !== 'publish') return
      if (packet.topic === `${prefix}/marker`) {
        subscriber.off('packetreceive', onPacket)
        resolve()
      } else if (String(packet.payload) === 'message') {
        copies.push(packet.qos)
      }
    }
    subscriber.on('packetreceive', onPacket)
  })
  await send()
  await sendMarker(`${prefix}/marker`)
  await markerArrived
  return copies
}
