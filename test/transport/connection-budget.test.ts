import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { ConnectionBudget, readOpenFiles, type ListenerKind } from '../../src/transport/connection-budget.js'

// The budget with a given limit (100) and descriptors in use (20): 100 - 20 - 32 headroom = 48
// connections over every listener together, 8 more for HTTP ones.

interface Listener {
  readonly server: Server
  /** resolves with true when the server accepts the next connection, false when it drops it */
  next (): Promise<boolean>
}

interface Setup {
  readonly budget: ConnectionBudget
  readonly logs: Array<Record<string, unknown>>
  readonly refused: ListenerKind[]
  readonly mqtt: Listener
  readonly http: Listener
}

async function listener (t: Test, budget: ConnectionBudget, kind: ListenerKind): Promise<Listener> {
  const server = createServer()
  budget.watch(server, kind)
  const waiting: Array<(accepted: boolean) => void> = []
  const accepted: Socket[] = []
  server.on('connection', (socket: Socket) => { accepted.push(socket); waiting.shift()?.(true) })
  server.on('drop', () => waiting.shift()?.(false))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of accepted) socket.destroy()
    server.close()
  })
  return { server, next: async () => await new Promise<boolean>((resolve) => waiting.push(resolve)) }
}

async function setup (t: Test): Promise<Setup> {
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _encoding, done) { logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
  const refused: ListenerKind[] = []
  const budget = new ConnectionBudget({
    logger: pino({ level: 'info' }, sink),
    relayConcurrency: 0,
    onRefused: (kind) => refused.push(kind),
    openFiles: () => ({ limit: 100, open: 20 }),
  })
  t.teardown(() => budget.close())
  const mqtt = await listener(t, budget, 'mqtt')
  const http = await listener(t, budget, 'http')
  budget.start()
  return { budget, logs, refused, mqtt, http }
}

/** Opens a connection and resolves whether the server accepted it (false: dropped as it was accepted). */
async function open (t: Test, to: Listener): Promise<{ socket: Socket, accepted: boolean }> {
  const outcome = to.next()
  const socket = connect((to.server.address() as { port: number }).port, '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  return { socket, accepted: await outcome }
}

t.test('connections beyond the budget are refused as they are accepted, counted, logged once, and make the server unready', async (t) => {
  const { budget, logs, refused, mqtt, http } = await setup(t)
  t.match(logs[0], { level: 40, openFilesLimit: 100, openFiles: 20, connectionBudget: 48 }, 'the limit at start, with a warning (below what the config implies)')

  const sockets: Socket[] = []
  for (let i = 0; i < 30; i++) sockets.push((await open(t, mqtt)).socket)
  for (let i = 0; i < 17; i++) sockets.push((await open(t, http)).socket)
  t.equal(budget.problem(), null, '47 open: ready')
  sockets.push((await open(t, http)).socket)
  t.equal(refused.length, 0, '48 connections over both listeners')
  t.equal(budget.problem()?.code, 'SERVER_UNAVAILABLE', 'at the budget: unready, the next MQTT connection would be refused')
  t.match(budget.problem()?.message, /open-files limit \(100\)/)

  t.equal((await open(t, mqtt)).accepted, false, 'the 49th is refused on MQTT')
  t.strictSame(refused, ['mqtt'])
  for (let i = 0; i < 8; i++) t.equal((await open(t, http)).accepted, true, `HTTP takes ${i + 1} of 8 more`)
  t.equal((await open(t, http)).accepted, false, 'then HTTP is refused too')
  t.equal((await open(t, mqtt)).accepted, false)
  t.strictSame(refused, ['mqtt', 'http', 'mqtt'], 'each refusal counted, by listener')

  const lines = logs.filter((line) => line.msg === 'connections refused: the open-files limit is reached (raise it: systemd LimitNOFILE=, ulimit -n)')
  t.equal(lines.length, 1, 'the first refusal is logged at once, the next ones wait for the interval')
  t.match(lines[0], { level: 40, refused: 1, connectionBudget: 48, openFilesLimit: 100 })

  // nine connections close: below the budget again
  for (const socket of sockets.splice(0, 9)) socket.destroy()
  await new Promise<void>((resolve) => {
    const check = (): void => { if (budget.problem() === null) resolve(); else setTimeout(check, 5) }
    check()
  })
  t.pass('ready again once below the budget')
  t.equal((await open(t, mqtt)).accepted, true, 'and MQTT takes a connection')
})

t.test('without a known limit nothing is budgeted', async (t) => {
  const logs: Array<Record<string, unknown>> = []
  const budget = new ConnectionBudget({
    logger: pino({ level: 'info' }, new Writable({ write (chunk: Buffer, _encoding, done) { logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })),
    relayConcurrency: 0,
    openFiles: () => ({ limit: null, open: null }),
  })
  const server = createServer()
  budget.watch(server, 'mqtt')
  budget.start()
  t.equal(server.maxConnections, undefined)
  t.equal(budget.problem(), null)
  t.match(logs[0]?.msg, /unknown/)
})

t.test('the limit and the descriptors open are read from /proc/self on Linux', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  const { limit, open } = readOpenFiles()
  t.ok(limit !== null && limit > 0, `limit ${String(limit)}`)
  t.ok(open !== null && open > 0 && open < (limit ?? 0), `open ${String(open)}`)
})
