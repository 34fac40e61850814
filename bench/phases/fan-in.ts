import { performance } from 'node:perf_hooks'
import { PAYLOAD_HEADER_BYTES, PublishEncoder, readSeq, readSource, writeStamp } from '../lib/mqtt-wire.js'
import { CpuMeter } from '../lib/proc.js'
import { coalesced, connectClients, perBrokerCpuSecond, placementNote, REDIS_METRICS, redisFigures, SeqSet, STALL_MS, waitUntil, warmUp } from './common.js'
import type { Phase } from './types.js'

/**
 * P publishers, each on its own topic, one persistent subscriber on the
 * wildcard over them. Each publisher stays at most `faninWindow` messages
 * ahead of what the subscriber got from it (and, at QoS 1, of its PUBACKs).
 */
export function fanIn (qos: 0 | 1): Phase {
  return {
    name: `fanin-qos${qos}`,
    title: `Fan-in QoS ${qos}`,
    defaultOn: true,
    metrics: [
      { key: 'deliveredPerSec', label: 'msgs/s', unit: '/s', better: 'higher', digits: 0, headline: true },
      { key: 'lost', label: 'lost', unit: '', better: 'lower', digits: 0, headline: true },
      { key: 'duplicated', label: 'duplicated', unit: '', better: 'lower', digits: 0 },
      { key: 'published', label: 'published', unit: '', better: 'none', digits: 0 },
      { key: 'perBrokerCpuSec', label: 'msgs per broker CPU-second', unit: '', better: 'higher', digits: 0, headline: true, diagnostic: true },
      ...REDIS_METRICS,
    ],
    applies: () => true,
    async run (ctx) {
      const o = ctx.options
      const p = o.faninPublishers
      const base = `bench/${ctx.tag}/fanin`
      const source = ctx.addresses.take(p + 1)
      const [subscriber] = await connectClients(ctx, [{ clientId: `${ctx.tag}-s`, clean: false, user: p, localAddress: source.of(p) }], 1,
        { filter: () => `${base}/+`, qos })
      if (subscriber === undefined) throw new Error('no subscriber')
      const publishers = await connectClients(ctx,
        Array.from({ length: p }, (_, i) => ({ clientId: `${ctx.tag}-p${i}`, clean: true, user: i, localAddress: source.of(i) })), 20)
      const placement = [
        ...await placementNote(ctx, 'subscriber', [subscriber.options.clientId]),
        ...await placementNote(ctx, 'publishers', publishers.map((c) => c.options.clientId)),
      ]

      const payloadBytes = Math.max(o.payloadBytes, PAYLOAD_HEADER_BYTES)
      const encoders = publishers.map((_, i) => new PublishEncoder(`${base}/${i}`, qos, payloadBytes))
      const seen = publishers.map(() => new SeqSet(o.maxMessages))
      const sent = new Array<number>(p).fill(0)
      const acked = new Array<number>(p).fill(0)
      const blocked = new Array<boolean>(p).fill(false)
      let delivered = 0
      let lastDeliveryAt = 0
      let publishing = true
      // a broker that loses a publisher's newest messages would close that publisher's window for good:
      // after STALL_MS without progress the messages in flight count as lost and the window reopens
      const floor = new Array<number>(p).fill(-1)
      const progressAt = new Array<number>(p).fill(performance.now())
      let stalls = 0

      const pump = coalesced(() => {
        if (!publishing) return
        const now = performance.now()
        let more = false
        for (let i = 0; i < p; i++) {
          if (blocked[i] === true) continue
          const s = sent[i] as number
          let allowed = Math.max((seen[i] as SeqSet).highest, floor[i] as number) + 1 + o.faninWindow - s
          if (qos === 1) allowed = Math.min(allowed, o.faninWindow - (s - (acked[i] as number)))
          allowed = Math.min(allowed, o.maxMessages - s, 128)
          if (allowed <= 0) continue
          const batch = (encoders[i] as PublishEncoder).encodeBatch(allowed, (payload, k) => writeStamp(payload, s + k, i, now), (k) => ((s + k) % 65535) + 1)
          sent[i] = s + allowed
          more = true
          const publisher = publishers[i]
          if (publisher !== undefined && !publisher.write(batch)) {
            blocked[i] = true
            publisher.socket?.once('drain', () => { blocked[i] = false; pump() })
          }
        }
        if (more) pump()
      })

      subscriber.onPublish = (payload) => {
        const source = readSource(payload)
        const set = seen[source]
        if (set !== undefined) set.add(readSeq(payload))
        progressAt[source] = performance.now()
        delivered++
        lastDeliveryAt = performance.now()
        pump()
      }
      publishers.forEach((publisher, i) => {
        publisher.onPuback = () => {
          acked[i] = (acked[i] as number) + 1
          pump()
        }
      })

      const total = (values: readonly number[]): number => values.reduce((a, v) => a + v, 0)
      const stallTimer = setInterval(() => {
        const now = performance.now()
        for (let i = 0; i < p; i++) {
          const effective = Math.max((seen[i] as SeqSet).highest, floor[i] as number)
          if (now - (progressAt[i] as number) > STALL_MS && (sent[i] as number) - effective - 1 >= o.faninWindow) {
            floor[i] = (sent[i] as number) - 1
            progressAt[i] = now
            stalls++
          }
        }
        pump()
      }, 100)
      const unique = (): number => seen.reduce((a, s) => a + s.unique, 0)
      pump()
      await warmUp(o)
      // what arrived during the warm-up is not counted in the rate
      const warm = { delivered: unique(), sent: total(sent) }
      const meter = new CpuMeter(ctx.broker)
      const t0 = performance.now()
      await waitUntil(() => performance.now() - t0 > o.faninSeconds * 1000, () => delivered, 5000, o.faninSeconds * 1000 + 1000)
      publishing = false
      clearInterval(stallTimer)
      const complete = await waitUntil(() => unique() >= total(sent) && (qos === 0 || total(acked) >= total(sent)), () => delivered + total(acked), 3000, 30_000)
      const cpu = meter.stop()
      const elapsed = ((lastDeliveryAt > 0 ? lastDeliveryAt : performance.now()) - t0) / 1000
      return {
        metrics: {
          publishers: p,
          published: total(sent),
          pubacked: qos === 1 ? total(acked) : null,
          deliveredPerSec: (unique() - warm.delivered) / elapsed,
          lost: total(sent) - unique(),
          duplicated: seen.reduce((a, s) => a + s.duplicates, 0),
          seconds: elapsed,
          stalls,
          perBrokerCpuSec: perBrokerCpuSecond(unique() - warm.delivered, cpu),
          ...redisFigures(cpu, total(sent) - warm.sent, unique() - warm.delivered),
        },
        cpu,
        notes: [...placement, ...(complete ? [] : [`not every message arrived: ${total(sent) - unique()} missing after the drain wait`]), ...(stalls > 0 ? [`window reopened ${stalls} time(s) after ${STALL_MS} ms without progress`] : [])],
      }
    },
  }
}
