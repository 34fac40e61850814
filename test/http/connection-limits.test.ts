import { connect as netConnect, type Socket } from 'node:net'
import t from 'tap'
import { connect, nextMessage, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

// Issue 14, item 8: requests whose headers or body trickle in were never timed out,
// and one address could hold any number of HTTP connections.

const alice = sign({ sub: 'alice' })

/** A raw TCP connection to the broker's HTTP port; destroyed at teardown. */
async function openSocket (t: Teardown, broker: TestBroker): Promise<Socket & { received: () => string }> {
  const socket = netConnect(broker.ports.http, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  // a refused or timed-out socket may end with a reset
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return Object.assign(socket, { received: () => Buffer.concat(chunks).toString('latin1') })
}

/** Milliseconds until `socket` closes, or null if it is still open after `deadlineMs`. */
async function closedWithin (socket: Socket, deadlineMs: number): Promise<number | null> {
  const started = performance.now()
  if (socket.closed) return 0
  return await new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.off('close', onClose)
      resolve(null)
    }, deadlineMs)
    const onClose = (): void => {
      clearTimeout(timer)
      resolve(performance.now() - started)
    }
    socket.once('close', onClose)
  })
}

/** Writes one byte of `text` every `everyMs` until the socket closes or the text is sent. */
function trickle (socket: Socket, text: string, everyMs: number): void {
  let i = 0
  const timer = setInterval(() => {
    if (socket.destroyed || i >= text.length) {
      clearInterval(timer)
      return
    }
    socket.write(text[i++] as string)
  }, everyMs)
  socket.once('close', () => clearInterval(timer))
}

/** Sends a keep-alive `GET /healthz` and resolves once its answer has arrived. */
async function healthzOver (socket: Socket & { received: () => string }): Promise<void> {
  const before = socket.received().length
  socket.write('GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n')
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (!socket.received().slice(before).includes('{"status":"ok"}')) return
      socket.off('data', check)
      resolve()
    }
    socket.on('data', check)
    socket.once('close', () => reject(new Error('closed before /healthz answered')))
  })
}

/** One sample of the Prometheus text at /metrics. */
async function metric (broker: TestBroker, name: string): Promise<number | undefined> {
  const text = (await api(broker, 'GET', '/metrics')).text
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

const HEADERS_MS = 300
const REQUEST_MS = 1000

t.test('slow requests are closed at http.headersTimeoutMs / http.requestTimeoutMs', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS } } })

  await t.test('headers trickled in are cut off at the headers timeout', async (t) => {
    const socket = await openSocket(t, broker)
    trickle(socket, 'GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Padding: ' + 'x'.repeat(200) + '\r\n\r\n', 50)
    const ms = await closedWithin(socket, 5000)
    t.not(ms, null, 'the server closed the connection')
    t.ok(ms !== null && ms < REQUEST_MS, `within the headers timeout, before the request timeout (${Math.round(ms ?? -1)} ms)`)
    t.match(socket.received(), /^HTTP\/1\.1 408 /, 'answered 408')
  })

  await t.test('a body trickled in (never idle) is cut off at the request timeout', async (t) => {
    const socket = await openSocket(t, broker)
    const body = JSON.stringify({ topic: 'users/alice/slow', payload: 'x'.repeat(60) })
    socket.write(`POST /v1/publish HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer ${alice}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`)
    // a byte every 100 ms: the socket is never idle long, but the whole body would take 8 s
    trickle(socket, body, 100)
    const ms = await closedWithin(socket, 5000)
    t.not(ms, null, 'the server closed the connection')
    t.ok(ms !== null && ms >= REQUEST_MS - 100 && ms < REQUEST_MS + 1000, `at the request timeout (${Math.round(ms ?? -1)} ms)`)
    t.match(socket.received(), /^HTTP\/1\.1 408 /, 'answered 408')
  })

  t.equal(await metric(broker, 'herald_http_request_timeouts_total'), 2, 'both counted')
  const after = await api(broker, 'GET', '/healthz')
  t.equal(after.status, 200, 'the server goes on')
})

t.test('an MQTT over WebSocket connection is not cut off by the request timeout', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS } } })
  const device = await connect(t, broker.wsUrl, { clientId: 'ws-device', password: alice })
  let closed = false
  device.on('close', () => { closed = true })
  await device.subscribeAsync('users/alice/#', { qos: 1 })

  // the server sweeps every open request at once: a slow request opened after the WebSocket
  // one, cut off at its request timeout, means the WebSocket connection was old enough too
  const slow = await openSocket(t, broker)
  slow.write('POST /v1/publish HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n')
  trickle(slow, 'x'.repeat(1000), 100)
  t.not(await closedWithin(slow, 5000), null, 'the slow request was cut off')

  const received = nextMessage(device, 'users/alice/still-here')
  await device.publishAsync('users/alice/still-here', 'yes', { qos: 1 })
  t.equal((await received).payload.toString(), 'yes', 'the WebSocket connection still carries MQTT')
  t.equal(closed, false, 'and was never closed')
})

t.test('http.maxConnectionsPerIp: the connection beyond the cap is closed at once', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { maxConnectionsPerIp: 3 } } })
  // upgraded to MQTT over WebSocket: no longer an HTTP connection, not counted
  const device = await connect(t, broker.wsUrl, { clientId: 'ws-device', password: alice })

  const open = [await openSocket(t, broker), await openSocket(t, broker), await openSocket(t, broker)]
  // an answer on each means the server has accepted and counted all three
  for (const socket of open) await healthzOver(socket)

  const refused = await openSocket(t, broker)
  refused.write('GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n')
  t.not(await closedWithin(refused, 5000), null, 'the fourth connection is closed')
  t.equal(refused.received(), '', 'without an answer')

  for (const socket of open) {
    socket.end()
    t.not(await closedWithin(socket, 5000), null, 'an open connection closes')
  }
  const healthz = await api(broker, 'GET', '/healthz')
  t.equal(healthz.status, 200, 'a fresh connection is served once the others are gone')
  t.equal(await metric(broker, 'herald_http_connections_refused_total'), 1, 'the refusal is counted')
  t.equal(device.connected, true, 'the WebSocket device stayed connected')
})
