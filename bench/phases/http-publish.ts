import { Agent, request } from 'node:http'
import { performance } from 'node:perf_hooks'
import { CpuMeter } from '../lib/proc.js'
import { Samples } from '../lib/stats.js'
import { connectClients, SeqSet, waitUntil } from './common.js'
import type { Phase } from './types.js'

/**
 * `POST /v1/publish` (QoS 1, service token) from `httpConcurrency` keep-alive
 * connections, delivered over MQTT to one persistent subscriber. Herald only:
 * the other brokers have no HTTP bridge. node:http with a keep-alive Agent is
 * the client (leaner than fetch, same connection reuse).
 */
export const httpPublish: Phase = {
  name: 'http',
  title: 'HTTP publish → MQTT',
  defaultOn: true,
  metrics: [
    { key: 'requestsPerSec', label: 'requests/s', unit: '/s', better: 'higher', digits: 0, headline: true },
    { key: 'requestP99Ms', label: 'request p99', unit: 'ms', better: 'lower', digits: 2, headline: true },
    { key: 'deliveryP99Ms', label: 'request → MQTT delivery p99', unit: 'ms', better: 'lower', digits: 2, headline: true },
    { key: 'lost', label: 'lost', unit: '', better: 'lower', digits: 0, headline: true },
    { key: 'errors', label: 'non-202 responses', unit: '', better: 'lower', digits: 0 },
  ],
  applies: (broker) => broker.http,
  async run (ctx) {
    const o = ctx.options
    const port = ctx.broker.httpPort
    if (port === undefined) throw new Error('no HTTP port')
    const topic = `bench/${ctx.tag}/http`
    const source = ctx.addresses.take(1)
    const [subscriber] = await connectClients(ctx, [{ clientId: `${ctx.tag}-s`, clean: false, user: 0, localAddress: source.of(0) }], 1, { filter: () => topic, qos: 1 })
    if (subscriber === undefined) throw new Error('no subscriber')

    const authorization = `Bearer ${ctx.tokens.service()}`
    const agent = new Agent({ keepAlive: true, maxSockets: o.httpConcurrency })
    const requestLatency = new Samples()
    const deliveryLatency = new Samples()
    const seen = new SeqSet(o.maxMessages)
    let ok = 0
    let errors = 0
    let seq = 0

    subscriber.onPublish = (payload) => {
      const now = performance.now()
      const text = payload.toString('latin1')
      const colon = text.indexOf(':')
      seen.add(Number(text.slice(0, colon)))
      deliveryLatency.add(now - Number(text.slice(colon + 1)))
    }

    const post = async (body: string): Promise<number> => await new Promise<number>((resolve) => {
      const req = request({
        host: ctx.broker.host,
        port,
        method: 'POST',
        path: '/v1/publish',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization },
        timeout: 10_000,
      }, (res) => {
        res.resume()
        res.once('end', () => resolve(res.statusCode ?? 0))
        res.once('error', () => resolve(0))
      })
      req.once('timeout', () => req.destroy(new Error('timeout')))
      req.once('error', () => resolve(0))
      req.end(body)
    })

    const meter = new CpuMeter(ctx.broker)
    const t0 = performance.now()
    const deadline = t0 + o.httpSeconds * 1000
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline && seq < o.maxMessages) {
        const n = seq++
        const start = performance.now()
        const status = await post(JSON.stringify({ topic, payload: `${n}:${start}`, qos: 1 }))
        if (status === 202) {
          ok++
          requestLatency.add(performance.now() - start)
        } else {
          errors++
        }
      }
    }
    await Promise.all(Array.from({ length: o.httpConcurrency }, worker))
    const elapsed = (performance.now() - t0) / 1000
    const complete = await waitUntil(() => seen.unique >= ok, () => seen.unique, 2000, 10_000)
    const cpu = meter.stop()
    agent.destroy()
    const r = requestLatency.summary()
    const d = deliveryLatency.summary()
    return {
      metrics: {
        requests: ok,
        errors,
        requestsPerSec: ok / elapsed,
        requestP50Ms: r?.p50 ?? null,
        requestP99Ms: r?.p99 ?? null,
        deliveryP50Ms: d?.p50 ?? null,
        deliveryP99Ms: d?.p99 ?? null,
        lost: ok - seen.unique,
        duplicated: seen.duplicates,
      },
      cpu,
      notes: complete ? [] : [`${ok - seen.unique} accepted publishes not delivered`],
    }
  },
}
