import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { LeanClient } from '../lib/lean-client.js'
import { CpuMeter, rssBytes } from '../lib/proc.js'
import type { Phase } from './types.js'

/**
 * K idle devices held at once: persistent sessions with keepalive on, each
 * (by default) subscribed to its own topic as a device is to its inbox.
 * Client sockets come from 127.0.0.2… so K is not bounded by one address's
 * ephemeral ports. Reports RSS per connection and how many survived the hold.
 */
export const scale: Phase = {
  name: 'scale',
  title: 'Idle connections',
  defaultOn: true,
  metrics: [
    { key: 'held', label: 'connections held', unit: '', better: 'higher', digits: 0, headline: true },
    { key: 'rssPerConnectionKB', label: 'RSS per idle connection', unit: 'kB', better: 'lower', digits: 1, headline: true },
    { key: 'rssAfterMB', label: 'broker RSS', unit: 'MB', better: 'lower', digits: 0 },
    { key: 'setupPerSec', label: 'connect+subscribe/s', unit: '/s', better: 'higher', digits: 0 },
    { key: 'idleBrokerCpu', label: 'broker CPU while idle', unit: 'cores', better: 'lower', digits: 3 },
  ],
  applies: () => true,
  async run (ctx) {
    const o = ctx.options
    const k = o.scaleConnections
    const source = ctx.addresses.take(k)
    for (let i = 0; i < k; i++) ctx.broker.credentials(i)
    await sleep(300)
    const rssBefore = rssBytes(ctx.broker.pid)

    const clients: LeanClient[] = []
    let failed = 0
    let next = 0
    let firstError: string | undefined
    const deadline = performance.now() + 180_000
    const setupMeter = new CpuMeter(ctx.broker.pid)
    const t0 = performance.now()
    const worker = async (): Promise<void> => {
      while (next < k && performance.now() < deadline) {
        const i = next++
        const client = ctx.client({ clientId: `${ctx.tag}-i${i}`, clean: false, user: i, localAddress: source.of(i), keepalive: o.keepaliveSec })
        try {
          const rc = await client.connect()
          if (rc !== 0) throw new Error(`CONNACK ${rc}`)
          if (o.scaleSubscribe && await client.subscribe(`bench/${ctx.tag}/scale/${i}`, 1) === 0x80) throw new Error('SUBACK refused')
          clients.push(client)
        } catch (err) {
          failed++
          firstError ??= err instanceof Error ? err.message : String(err)
          client.destroy()
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(o.scaleConcurrency, k) }, worker))
    const setupSeconds = (performance.now() - t0) / 1000
    const setupCpu = setupMeter.stop()

    // hold: PINGREQ every half keepalive keeps the sessions alive however long the hold is
    const idleMeter = new CpuMeter(ctx.broker.pid)
    const pingEvery = o.keepaliveSec * 500
    let lastPing = performance.now()
    const holdUntil = performance.now() + o.scaleHoldSeconds * 1000
    while (performance.now() < holdUntil) {
      await sleep(Math.min(200, Math.max(1, holdUntil - performance.now())))
      if (o.keepaliveSec > 0 && performance.now() - lastPing > pingEvery) {
        for (const client of clients) client.ping()
        lastPing = performance.now()
      }
    }
    const idleCpu = idleMeter.stop()
    const held = clients.filter((c) => !c.closed).length
    const rssAfter = rssBytes(ctx.broker.pid)
    const notes: string[] = []
    if (failed > 0) notes.push(`${failed} connections failed (first: ${firstError ?? '?'})`)
    if (held < clients.length) notes.push(`${clients.length - held} connections closed during the hold`)
    return {
      metrics: {
        target: k,
        connected: clients.length,
        held,
        failed,
        setupPerSec: clients.length / setupSeconds,
        rssBeforeMB: rssBefore / 2 ** 20,
        rssAfterMB: rssAfter / 2 ** 20,
        rssPerConnectionKB: held > 0 ? (rssAfter - rssBefore) / held / 1024 : null,
        idleBrokerCpu: idleCpu.broker,
      },
      cpu: setupCpu,
      notes,
    }
  },
}
