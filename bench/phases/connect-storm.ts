import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LeanClient } from '../lib/lean-client.js'
import { brokerRssBytes, CpuMeter } from '../lib/proc.js'
import { Samples } from '../lib/stats.js'
import { perBrokerCpuSecond } from './common.js'
import type { Phase } from './types.js'

/**
 * N persistent sessions (clean = false, each its own user) as fast as the
 * broker takes them, `connectConcurrency` handshakes in flight. CONNACK
 * latency runs from the TCP connect call to the CONNACK; RSS per connection is
 * the growth of a fresh broker's RSS divided by the connections held.
 */
export const connectStorm: Phase = {
  name: 'connect',
  title: 'Connect storm',
  defaultOn: true,
  metrics: [
    { key: 'connectionsPerSec', label: 'connections/s', unit: '/s', better: 'higher', digits: 0, headline: true },
    { key: 'connackP50Ms', label: 'CONNACK p50', unit: 'ms', better: 'lower', digits: 2 },
    { key: 'connackP99Ms', label: 'CONNACK p99', unit: 'ms', better: 'lower', digits: 2, headline: true },
    { key: 'rssPerConnectionKB', label: 'RSS per connection', unit: 'kB', better: 'lower', digits: 1, headline: true },
    { key: 'failed', label: 'failed connections', unit: '', better: 'lower', digits: 0 },
    { key: 'perBrokerCpuSec', label: 'connections per broker CPU-second', unit: '', better: 'higher', digits: 0, headline: true, diagnostic: true },
  ],
  applies: () => true,
  async run (ctx) {
    const { connectClients: n, connectConcurrency: concurrency } = ctx.options
    const source = ctx.addresses.take(n)
    // sign every token before the clock starts: signing is the client's cost, not the broker's
    for (let i = 0; i < n; i++) ctx.broker.credentials(i)
    await sleep(300)
    const rssBefore = brokerRssBytes(ctx.broker)

    const clients: LeanClient[] = []
    const latency = new Samples()
    let failed = 0
    let next = 0
    const deadline = performance.now() + 120_000
    const meter = new CpuMeter(ctx.broker)
    const t0 = performance.now()
    const worker = async (): Promise<void> => {
      while (next < n && performance.now() < deadline) {
        const i = next++
        const client = ctx.client({ clientId: `${ctx.tag}-c${i}`, clean: false, user: i, localAddress: source.of(i) })
        const start = performance.now()
        try {
          const rc = await client.connect()
          if (rc === 0) {
            latency.add(performance.now() - start)
            clients.push(client)
          } else {
            failed++
            client.destroy()
          }
        } catch {
          failed++
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
    const elapsed = (performance.now() - t0) / 1000
    const cpu = meter.stop()

    // let the broker finish what a CONNECT leaves behind (session writes) before reading its RSS
    await sleep(1000)
    const alive = clients.filter((c) => !c.closed).length
    const rssAfter = brokerRssBytes(ctx.broker)

    const l = latency.summary()
    const notes: string[] = []
    if (alive < clients.length) notes.push(`${clients.length - alive} connections closed by the broker before RSS was read`)
    return {
      metrics: {
        connections: clients.length,
        failed: failed + (next < n ? n - next : 0),
        connectionsPerSec: clients.length / elapsed,
        connackP50Ms: l?.p50 ?? null,
        connackP99Ms: l?.p99 ?? null,
        connackMaxMs: l?.max ?? null,
        rssBeforeMB: rssBefore / 2 ** 20,
        rssAfterMB: rssAfter / 2 ** 20,
        rssPerConnectionKB: alive > 0 ? (rssAfter - rssBefore) / alive / 1024 : null,
        perBrokerCpuSec: perBrokerCpuSecond(clients.length, cpu),
      },
      cpu,
      notes,
    }
  },
}
