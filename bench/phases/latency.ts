import { performance } from 'node:perf_hooks'
import { PAYLOAD_HEADER_BYTES, PublishEncoder, readSentAt, readSeq, writeStamp } from '../lib/mqtt-wire.js'
import { collectGarbage } from '../lib/generator-heap.js'
import { CpuMeter } from '../lib/proc.js'
import { StallWatch } from '../lib/stall-watch.js'
import { Samples } from '../lib/stats.js'
import { connectClients, REDIS_METRICS, redisFigures, SeqSet, waitUntil } from './common.js'
import type { Phase } from './types.js'

/**
 * QoS 1 at a fixed rate (default 1,000 msg/s) from one publisher to one
 * persistent subscriber, after `warmupSeconds` at that rate whose messages
 * are not sampled; latency from the publisher's write to the
 * subscriber's read, both in this process, so one clock. On a cluster of
 * several workers the publisher is connected again until it lands on
 * another worker than the subscriber: the figure includes the trip over the
 * bus between nodes.
 */
export const latency: Phase = {
  name: 'latency',
  title: 'Latency QoS 1',
  defaultOn: true,
  metrics: [
    { key: 'p50Ms', label: 'p50', unit: 'ms', better: 'lower', digits: 3, headline: true },
    { key: 'p99Ms', label: 'p99', unit: 'ms', better: 'lower', digits: 3, headline: true },
    { key: 'maxMs', label: 'max', unit: 'ms', better: 'lower', digits: 2, headline: true },
    { key: 'lost', label: 'lost', unit: '', better: 'lower', digits: 0, headline: true },
    { key: 'generatorStallMs', label: 'longest load generator stall', unit: 'ms', better: 'none', digits: 2 },
    ...REDIS_METRICS,
  ],
  applies: () => true,
  async run (ctx) {
    const o = ctx.options
    const topic = `bench/${ctx.tag}/latency`
    const source = ctx.addresses.take(2)
    const [subscriber] = await connectClients(ctx, [{ clientId: `${ctx.tag}-s`, clean: false, user: 0, localAddress: source.of(0) }], 1, { filter: () => topic, qos: 1 })
    let [publisher] = await connectClients(ctx, [{ clientId: `${ctx.tag}-p`, clean: true, user: 1, localAddress: source.of(1) }], 1)
    if (subscriber === undefined || publisher === undefined) throw new Error('no clients')
    const notes: string[] = []
    // 1: publisher and subscriber on different workers, 0: on the same one, null: a broker of one process
    let crossNode: number | null = null
    if (ctx.broker.workers > 1 && ctx.broker.nodesOf !== undefined) {
      for (let attempt = 1; ; attempt++) {
        const [subscriberNode, publisherNode] = await ctx.broker.nodesOf([subscriber.options.clientId, publisher.options.clientId])
        if (subscriberNode != null && publisherNode != null && subscriberNode !== publisherNode) {
          crossNode = 1
          if (attempt > 1) notes.push(`publisher connected ${attempt} times to land on another worker than the subscriber`)
          break
        }
        if (attempt >= 20) {
          crossNode = 0
          notes.push('publisher and subscriber on the same worker after 20 connections: the figure is not cross-node')
          break
        }
        publisher.disconnect()
        ;[publisher] = await connectClients(ctx, [{ clientId: `${ctx.tag}-p${attempt}`, clean: true, user: 1, localAddress: source.of(1) }], 1)
        if (publisher === undefined) throw new Error('no publisher')
      }
    }
    const sender = publisher

    const encoder = new PublishEncoder(topic, 1, Math.max(o.payloadBytes, PAYLOAD_HEADER_BYTES))
    const total = Math.min(o.maxMessages, Math.round(o.latencyRate * (o.latencySeconds + o.warmupSeconds)))
    const warmupCount = Math.round(o.latencyRate * o.warmupSeconds)
    const samples = new Samples()
    const seen = new SeqSet(total)
    let sent = 0
    let acked = 0

    subscriber.onPublish = (payload) => {
      const now = performance.now()
      const seq = readSeq(payload)
      seen.add(seq)
      if (seq >= warmupCount) samples.add(now - readSentAt(payload))
    }
    sender.onPuback = () => { acked++ }

    /** Writes messages `from` … `to - 1` on the phase's schedule; resolves once the last is written. */
    const sendAtRate = async (from: number, to: number, stalls?: StallWatch): Promise<void> => await new Promise<void>((resolve) => {
      if (from >= to) {
        resolve()
        return
      }
      const start = performance.now()
      // a 1 ms timer sends whatever the schedule says is due: one message per tick at 1,000 msg/s
      const timer = setInterval(() => {
        const now = performance.now()
        stalls?.tick(now)
        const due = Math.min(to, from + Math.floor((now - start) * o.latencyRate / 1000) + 1)
        if (due > sent) {
          const first = sent
          sender.write(encoder.encodeBatch(due - first, (payload, i) => writeStamp(payload, first + i, 0, now), (i) => ((first + i) % 65535) + 1))
          sent = due
        }
        if (sent >= to || now - start > (to - from) / o.latencyRate * 1000 * 2) {
          clearInterval(timer)
          resolve()
        }
      }, 1)
    })
    const allThrough = async (): Promise<boolean> => await waitUntil(() => seen.unique >= sent && acked >= sent, () => seen.unique + acked, 2000, 10_000)

    const meter = new CpuMeter(ctx.broker)
    await sendAtRate(0, warmupCount)
    // between the warm-up and the measured messages, with nothing in flight: the generator's own
    // full collection here rather than within the window (a mark-compact of this process stops
    // every client at once: 5–6 ms ones set 10–14 ms maxima, bench/RESULTS.md "thirteenth session")
    await allThrough()
    collectGarbage()
    const stalls = new StallWatch()
    const measuredStart = performance.now()
    await sendAtRate(warmupCount, total, stalls)
    const sendSeconds = (performance.now() - measuredStart) / 1000
    const complete = await allThrough()
    const cpu = meter.stop()
    const s = samples.summary()
    return {
      metrics: {
        rate: (sent - warmupCount) / sendSeconds,
        sent,
        samples: s?.count ?? 0,
        p50Ms: s?.p50 ?? null,
        p90Ms: s?.p90 ?? null,
        p99Ms: s?.p99 ?? null,
        maxMs: s?.max ?? null,
        lost: sent - seen.unique,
        duplicated: seen.duplicates,
        crossNode,
        generatorStallMs: stalls.longestMs,
        ...redisFigures(cpu, sent, seen.unique),
      },
      cpu,
      notes: [...notes, ...(complete ? [] : [`${sent - seen.unique} messages missing, ${sent - acked} PUBACKs missing`])],
    }
  },
}
