import { performance } from 'node:perf_hooks'
import { PAYLOAD_HEADER_BYTES, PublishEncoder, readSeq, writeStamp } from '../lib/mqtt-wire.js'
import { CpuMeter } from '../lib/proc.js'
import { coalesced, connectClients, perBrokerCpuSecond, placementNote, REDIS_METRICS, redisFigures, SeqSet, STALL_MS, waitUntil, warmUp } from './common.js'
import type { Phase } from './types.js'

/** Who subscribes in a fan-out phase. */
export interface FanOutSubscribers {
  /** false: persistent sessions, as devices connect; true: clean sessions, as dashboards and backend services do */
  clean: boolean
  /** every subscriber is the same user (one token), as one user's many devices or a service's workers are */
  oneUser: boolean
}

const DEVICES: FanOutSubscribers = { clean: false, oneUser: false }

/**
 * One publisher, S subscribers on one topic: by default persistent sessions
 * (clean = false, as devices connect), each its own user. The publisher stays
 * at most `fanoutWindow` messages ahead of the slowest subscriber (and, at
 * QoS 1, of its own PUBACKs), so the figure is the broker's delivery rate, not
 * the depth of its queues.
 */
export function fanOut (qos: 0 | 1, who: FanOutSubscribers = DEVICES): Phase {
  const suffix = `${who.clean ? '-clean' : ''}${who.oneUser ? '-one-user' : ''}`
  const described = [who.clean ? 'clean sessions' : '', who.oneUser ? 'one user' : ''].filter((s) => s !== '').join(', ')
  return {
    name: `fanout-qos${qos}${suffix}`,
    title: `Fan-out QoS ${qos}${described === '' ? '' : ` (${described})`}`,
    defaultOn: true,
    metrics: [
      { key: 'deliveredPerSec', label: 'delivered msgs/s', unit: '/s', better: 'higher', digits: 0, headline: true },
      { key: 'lost', label: 'lost', unit: '', better: 'lower', digits: 0, headline: true },
      { key: 'duplicated', label: 'duplicated', unit: '', better: 'lower', digits: 0, headline: true },
      { key: 'published', label: 'published', unit: '', better: 'none', digits: 0 },
      { key: 'perBrokerCpuSec', label: 'deliveries per broker CPU-second', unit: '', better: 'higher', digits: 0, headline: true, diagnostic: true },
      ...REDIS_METRICS,
    ],
    applies: () => true,
    async run (ctx) {
      const o = ctx.options
      const topic = `bench/${ctx.tag}/fanout`
      const source = ctx.addresses.take(o.fanoutSubscribers + 1)
      const seen: SeqSet[] = []
      let delivered = 0
      let lastDeliveryAt = 0

      const subscribers = await connectClients(ctx,
        Array.from({ length: o.fanoutSubscribers }, (_, i) => ({ clientId: `${ctx.tag}-s${i}`, clean: who.clean, user: who.oneUser ? 0 : i, localAddress: source.of(i) })),
        20, { filter: () => topic, qos })
      const [publisher] = await connectClients(ctx, [{ clientId: `${ctx.tag}-p`, clean: true, user: o.fanoutSubscribers, localAddress: source.of(o.fanoutSubscribers) }], 1)
      if (publisher === undefined) throw new Error('no publisher')
      // a cluster: subscribers and publisher spread over the workers (node:cluster hands connections out in turn)
      const placement = [
        ...await placementNote(ctx, 'subscribers', subscribers.map((s) => s.options.clientId)),
        ...await placementNote(ctx, 'publisher', [publisher.options.clientId]),
      ]

      const encoder = new PublishEncoder(topic, qos, Math.max(o.payloadBytes, PAYLOAD_HEADER_BYTES))
      let sent = 0
      let acked = 0
      let publishing = true
      let waitingDrain = false
      // a broker that loses the newest messages would close the window for good: after STALL_MS
      // without any delivery the messages in flight count as lost and the window reopens
      let floor = -1
      let stalls = 0

      const pump = coalesced(() => {
        if (!publishing || waitingDrain) return
        let slowest = Infinity
        for (const s of seen) if (s.highest < slowest) slowest = s.highest
        slowest = Math.max(slowest, floor)
        let allowed = slowest + 1 + o.fanoutWindow - sent
        if (qos === 1) allowed = Math.min(allowed, o.fanoutWindow - (sent - acked))
        allowed = Math.min(allowed, o.maxMessages - sent, 256)
        if (allowed <= 0) return
        const first = sent
        const now = performance.now()
        const batch = encoder.encodeBatch(allowed, (payload, i) => writeStamp(payload, first + i, 0, now), (i) => ((first + i) % 65535) + 1)
        sent += allowed
        if (!publisher.write(batch)) {
          waitingDrain = true
          publisher.socket?.once('drain', () => { waitingDrain = false; pump() })
        }
        // more may be allowed at once (the window is wider than one batch)
        pump()
      })

      subscribers.forEach((client, i) => {
        const set = new SeqSet(o.maxMessages)
        seen[i] = set
        client.onPublish = (payload) => {
          set.add(readSeq(payload))
          delivered++
          lastDeliveryAt = performance.now()
          pump()
        }
      })
      publisher.onPuback = () => {
        acked++
        pump()
      }

      const stallTimer = setInterval(() => {
        if (performance.now() - lastDeliveryAt > STALL_MS && lastDeliveryAt > 0) {
          floor = sent - 1
          stalls++
        }
        pump()
      }, 100)
      const uniqueSoFar = (): number => seen.reduce((a, s) => a + s.unique, 0)
      pump()
      await warmUp(o)
      // what arrived during the warm-up is not counted in the rate
      const warm = { delivered: uniqueSoFar(), sent }
      const meter = new CpuMeter(ctx.broker)
      const t0 = performance.now()
      await waitUntil(() => performance.now() - t0 > o.fanoutSeconds * 1000 || sent >= o.maxMessages, () => delivered, 5000, o.fanoutSeconds * 1000 + 1000)
      publishing = false
      clearInterval(stallTimer)
      const expected = (): number => sent * subscribers.length
      const complete = await waitUntil(() => uniqueSoFar() >= expected() && (qos === 0 || acked >= sent), () => delivered + acked, 3000, 30_000)
      const cpu = meter.stop()
      const unique = uniqueSoFar()
      const duplicated = seen.reduce((a, s) => a + s.duplicates, 0)
      const elapsed = ((lastDeliveryAt > 0 ? lastDeliveryAt : performance.now()) - t0) / 1000
      return {
        metrics: {
          subscribers: subscribers.length,
          published: sent,
          pubacked: qos === 1 ? acked : null,
          deliveredPerSec: (unique - warm.delivered) / elapsed,
          lost: expected() - unique,
          duplicated,
          seconds: elapsed,
          stalls,
          perBrokerCpuSec: perBrokerCpuSecond(unique - warm.delivered, cpu),
          ...redisFigures(cpu, sent - warm.sent, unique - warm.delivered),
        },
        cpu,
        notes: [...placement, ...(complete ? [] : [`not every delivery arrived: ${expected() - unique} missing after the drain wait`]), ...(stalls > 0 ? [`window reopened ${stalls} time(s) after ${STALL_MS} ms without progress`] : [])],
      }
    },
  }
}
