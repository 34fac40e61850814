/**
 * One load generator child of the scale phase (lib/idle-generators.ts):
 * connects the idle clients it is given, keeps them alive, counts them on
 * request. Exits when its parent goes (the IPC channel closes).
 */
import { performance } from 'node:perf_hooks'
import type { FromIdleChild, ToIdleChild } from './idle-generators.js'
import { LeanClient } from './lean-client.js'

const clients: LeanClient[] = []

function send (message: FromIdleChild): void {
  process.send?.(message)
}

async function start (message: Extract<ToIdleChild, { type: 'start' }>): Promise<void> {
  let failed = 0
  let firstError: string | undefined
  let next = 0
  const deadline = performance.now() + message.deadlineMs
  // PINGREQ every half keepalive keeps the sessions alive however long the parent holds them, from the
  // first connection on: a setup slower than 1.5 keepalives (50,000 into a cluster on a busy machine)
  // would otherwise see the broker close the first ones before the rest are in ([MQTT-3.1.2-24])
  if (message.keepalive > 0) {
    setInterval(() => {
      for (const client of clients) client.ping()
    }, message.keepalive * 500)
  }
  const worker = async (): Promise<void> => {
    while (next < message.clients.length && performance.now() < deadline) {
      const spec = message.clients[next++]
      if (spec === undefined) break
      const client = new LeanClient({
        host: message.host,
        port: message.port,
        localAddress: spec.localAddress,
        clientId: spec.clientId,
        clean: false,
        keepalive: message.keepalive,
        username: spec.username,
        password: spec.password,
        timeoutMs: 30_000,
      })
      try {
        const rc = await client.connect()
        if (rc !== 0) throw new Error(`CONNACK ${rc}`)
        if (spec.topic !== undefined && await client.subscribe(spec.topic, 1) === 0x80) throw new Error('SUBACK refused')
        clients.push(client)
      } catch (err) {
        failed++
        firstError ??= err instanceof Error ? err.message : String(err)
        client.destroy()
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(message.concurrency, message.clients.length)) }, worker))
  failed += message.clients.length - Math.min(next, message.clients.length)
  send({ type: 'connected', connected: clients.length, failed, firstError })
}

process.on('message', (message: ToIdleChild) => {
  if (message.type === 'start') {
    start(message).catch((err: unknown) => {
      process.stderr.write(`idle generator: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
      process.exit(1)
    })
  } else if (message.type === 'count') {
    send({ type: 'count', held: clients.filter((c) => !c.closed).length })
  }
})
process.on('disconnect', () => process.exit(0))
