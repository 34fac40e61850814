import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { connect as tcpConnect, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import mqttPacket from 'mqtt-packet'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { maxConnectBytes } from '../../src/transport/pre-auth.js'
import { connect, makeTempDir, nextMessage, sign, startBroker, TEST_SECRET, type TestBroker } from '../helpers/broker.js'
import { spawnBroker, type ChildBroker } from '../helpers/child-broker.js'
import { within } from '../helpers/within.js'
import { eventually } from '../helpers/eventually.js'

// Issue 14 item 4: a CONNECT could announce up to limits.maxPacketBytes (256 kB) and stall; 4,000 such
// sockets took the broker from 124 MB to 1,150 MB. Now the first packet must be a CONNECT of at most
// limits.maxConnectBytes (derived: 10,880 bytes), an address may hold limits.maxPendingConnectsPerIp
// connections that have not sent one, and WebSocket and TLS get the same bounds before the CONNECT.

/** Sockets per phase of the memory test: enough that 20 kB each (40 MB) stands far above the broker's noise. */
const SOCKETS = 2000
/** The bound the issue asks for, per stalled unauthenticated socket. */
const MAX_BYTES_PER_SOCKET = 20 * 1024

const isLinux = process.platform === 'linux'

/**
 * Loaded into the measured broker: on SIGUSR2 it collects garbage and logs a line. RSS is read after a
 * full collection, so the figures are what the sockets hold, not garbage that the next collection would
 * take (which made readings of the same run differ by 10 kB per socket either way).
 */
const GC_ON_SIGNAL = 'data:text/javascript,process.on(\'SIGUSR2\',()=>{globalThis.gc();globalThis.gc();console.log(JSON.stringify({msg:\'gc\'}))})'

t.test('a stalled unauthenticated socket costs the broker at most 20 kB', { skip: !isLinux && 'reads /proc', timeout: 240_000 }, async (t) => {
  t.test('the issue\'s attack: a CONNECT announcing 256 kB, then 32 KiB of it', async (t) => {
    const broker = await spawnMeasuredBroker(t)
    const baseline = await liveRss(broker)
    // the header and a few bytes first, the bulk once the broker has seen the header
    const sockets = await openSockets(t, broker, SOCKETS, Buffer.concat([connectHeader(262_000), Buffer.alloc(16, 0x61)]))
    await brokerHasRead(broker.ports.mqtt)
    await writeEach(sockets, Buffer.alloc(32 * 1024, 0x61))
    await brokerHasRead(broker.ports.mqtt)
    const perSocket = (await liveRss(broker) - baseline) / SOCKETS
    t.ok(perSocket <= MAX_BYTES_PER_SOCKET, `${Math.round(perSocket)} bytes of RSS per socket (at most ${MAX_BYTES_PER_SOCKET})`)
    t.equal(await metric(broker, 'herald_mqtt_preauth_refused_total{reason="connect_too_large"}'), SOCKETS, 'each closed from its header, and counted')
  })

  t.test('the worst a peer can do now: the largest CONNECT allowed, all but its last byte', async (t) => {
    const broker = await spawnMeasuredBroker(t)
    const limit = maxConnectBytes(loadConfig({ env: {} }))
    const header = connectHeader(limit)
    const baseline = await liveRss(broker)
    const sockets = await openSockets(t, broker, SOCKETS, Buffer.concat([header, Buffer.alloc(limit - header.length - 1, 0x61)]))
    await brokerHasRead(broker.ports.mqtt)
    t.equal(await metric(broker, 'herald_mqtt_pending_connects'), SOCKETS, 'every socket is open, waiting for the rest of its CONNECT')
    const perSocket = (await liveRss(broker) - baseline) / SOCKETS
    t.ok(perSocket <= MAX_BYTES_PER_SOCKET, `${limit - 1} bytes of a CONNECT: ${Math.round(perSocket)} bytes of RSS per socket (at most ${MAX_BYTES_PER_SOCKET})`)
    for (const socket of sockets) socket.destroy()
    await eventually('the pending count returns to 0', async () => await metric(broker, 'herald_mqtt_pending_connects') === 0, 30_000)
  })
})

/** A child broker whose sockets all come from 127.0.0.1 and stay open while measured (no per-IP cap, no timeout), with GC_ON_SIGNAL. */
async function spawnMeasuredBroker (t: Test): Promise<ChildBroker> {
  const dir = await makeTempDir(t)
  const configFile = join(dir, 'herald.json')
  await writeFile(configFile, JSON.stringify({ limits: { maxPendingConnectsPerIp: 0, connectTimeoutMs: 600_000 } }))
  return await spawnBroker(t, {
    HERALD_DATA_DIR: join(dir, 'data'),
    HERALD_JWT_SECRET: TEST_SECRET,
    HERALD_CONFIG: configFile,
    NODE_OPTIONS: `--expose-gc --import=${GC_ON_SIGNAL}`,
  })
}

t.test('limits.maxPendingConnectsPerIp refuses connections of one address beyond it, and only of that one', { skip: !isLinux && 'needs 127.0.0.x source addresses' }, async (t) => {
  const cap = 3
  const broker = await startBroker(t, { captureLogs: true, overrides: { limits: { maxPendingConnectsPerIp: cap, connectTimeoutMs: 600_000 } } })
  const token = sign({ sub: 'alice' })
  const packet = (clientId: string): Buffer => mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30, username: 'alice', password: Buffer.from(token) })

  // three connections from 127.0.0.2 send half a CONNECT each
  const halves = await Promise.all(Array.from({ length: cap }, async (_, i) => {
    const raw = new RawClient(broker.ports.mqtt, '127.0.0.2')
    t.teardown(() => raw.socket.destroy())
    await raw.connected
    const whole = packet(`half-${i}`)
    raw.socket.write(whole.subarray(0, 20))
    return { raw, rest: whole.subarray(20) }
  }))
  await brokerHasRead(broker.ports.mqtt)
  t.equal(await httpMetric(broker, 'herald_mqtt_pending_connects'), cap, `${cap} connections wait for the rest of their CONNECT`)

  const refused = new RawClient(broker.ports.mqtt, '127.0.0.2')
  t.teardown(() => refused.socket.destroy())
  refused.socket.write(packet('fourth'))
  t.equal(await refused.settled(), 'closed', 'a fourth from 127.0.0.2 is closed without a CONNACK')
  for (const address of ['127.0.0.3', '127.0.0.4']) {
    const other = new RawClient(broker.ports.mqtt, address)
    t.teardown(() => other.socket.destroy())
    other.socket.write(packet(`from-${address}`))
    t.equal(await other.settled(), 0, `${address} connects meanwhile (CONNACK 0)`)
  }

  // one of the three completes its CONNECT: 127.0.0.2 has room again
  const first = halves[0]
  if (first === undefined) throw new Error('no connection')
  first.raw.socket.write(first.rest)
  t.equal(await first.raw.settled(), 0, 'the stalled CONNECT, completed, is accepted')
  const again = new RawClient(broker.ports.mqtt, '127.0.0.2')
  t.teardown(() => again.socket.destroy())
  again.socket.write(packet('again'))
  t.equal(await again.settled(), 0, 'and 127.0.0.2 connects again')

  t.equal(await httpMetric(broker, 'herald_mqtt_preauth_refused_total{reason="pending_per_ip"}'), 1, 'the refusal is counted')
  const line = broker.logs.find((entry) => typeof entry.msg === 'string' && entry.msg.includes('limits.maxPendingConnectsPerIp'))
  t.equal(line?.level, 40, 'and logged at warn')
  t.equal(line?.ip, '127.0.0.2')
})

t.test('a first packet that is not a CONNECT, or a CONNECT over limits.maxConnectBytes, is closed unread', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { connectTimeoutMs: 600_000 } } })
  const publish = new RawClient(broker.ports.mqtt, '127.0.0.1')
  t.teardown(() => publish.socket.destroy())
  publish.socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'users/alice/x', payload: Buffer.alloc(10), qos: 0, retain: false, dup: false }))
  t.equal(await publish.settled(), 'closed', 'a PUBLISH before CONNECT [MQTT-3.1.0-1]')
  const large = new RawClient(broker.ports.mqtt, '127.0.0.1')
  t.teardown(() => large.socket.destroy())
  large.socket.write(connectHeader(maxConnectBytes(broker.config) + 1))
  t.equal(await large.settled(), 'closed', 'a CONNECT one byte over the limit, from its header alone')
  t.equal(await httpMetric(broker, 'herald_mqtt_preauth_refused_total{reason="not_connect"}'), 1)
  t.equal(await httpMetric(broker, 'herald_mqtt_preauth_refused_total{reason="connect_too_large"}'), 1)
})

t.test('over WebSocket, a message before the CONNECT may not exceed limits.maxConnectBytes; after it, a packet may', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { connectTimeoutMs: 600_000 } } })
  const limit = maxConnectBytes(broker.config)

  // ws holds a whole message before passing it on: a frame announcing 100 kB, half sent, then nothing
  const socket = tcpConnect(broker.ports.http, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => received.push(chunk))
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write(`GET ${broker.config.http.wsPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n')
  await eventually('the upgrade answer', async () => Buffer.concat(received).includes('\r\n\r\n'), 30_000)
  t.match(Buffer.concat(received).toString('latin1'), /^HTTP\/1.1 101/)
  received.length = 0
  const length = 100_000
  const frame = Buffer.alloc(14)
  frame[0] = 0x82 // FIN, binary
  frame[1] = 0x80 | 127 // masked, 64-bit length
  frame.writeBigUInt64BE(BigInt(length), 2)
  frame.writeUInt32BE(0x01020304, 10)
  socket.write(Buffer.concat([frame, Buffer.alloc(length / 2)]))
  await within(5000, 'the broker closes the connection', closed)
  const close = Buffer.concat(received)
  t.equal(close[0], 0x88, 'with a close frame')
  t.equal(close.readUInt16BE(2), 1009, '1009: message too big')
  t.ok(limit < length)

  // an authenticated WebSocket client sends and receives a packet far above the CONNECT limit
  const token = sign({ sub: 'alice' })
  const client = await connect(t, broker.wsUrl, { clientId: 'ws-large', password: token })
  await client.subscribeAsync('users/alice/large', { qos: 1 })
  const arrived = nextMessage(client, 'users/alice/large')
  await client.publishAsync('users/alice/large', Buffer.alloc(100_000, 0x62), { qos: 1 })
  t.equal((await arrived).payload.length, 100_000)
})

t.test('a TLS handshake that stalls is closed after limits.connectTimeoutMs', async (t) => {
  const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))
  const broker = await startBroker(t, {
    overrides: { tls: { certFile: fixture('cert.pem'), keyFile: fixture('key.pem'), mqttPort: 0, httpsPort: 0 }, limits: { connectTimeoutMs: 300 } },
  })
  const socket = tcpConnect(broker.ports.mqtts ?? 0, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  // nothing is sent; Node's own handshake timeout is 120 s
  await within(10_000, 'the broker closes the connection', closed)
  t.pass('closed')
})

/** A raw MQTT connection from `localAddress`; `outcome` is the CONNACK return code, or 'closed' when the broker closes it first. */
class RawClient {
  readonly socket: Socket
  readonly connected: Promise<void>
  readonly outcome: Promise<number | 'closed'>

  constructor (port: number, localAddress: string) {
    this.socket = tcpConnect({ port, host: '127.0.0.1', localAddress })
    this.socket.on('error', () => {}) // a refused connection may be reset
    this.connected = new Promise((resolve) => this.socket.once('connect', () => resolve()))
    this.outcome = new Promise((resolve) => {
      const parser = mqttPacket.parser({ protocolVersion: 4 })
      parser.on('packet', (packet) => { if (packet.cmd === 'connack') resolve(packet.returnCode ?? -1) })
      this.socket.on('data', (chunk: Buffer) => parser.parse(chunk))
      this.socket.once('close', () => resolve('closed'))
    })
  }

  /** The outcome, or 'open' when there is none within 5 s (the connection timeouts of these tests are far longer). */
  async settled (): Promise<number | 'closed' | 'open'> {
    return await Promise.race([this.outcome, delay(5000, 'open' as const, { ref: false })])
  }
}

/** A CONNECT fixed header announcing a packet of `total` bytes (header included). */
function connectHeader (total: number): Buffer {
  for (let lengthBytes = 1; lengthBytes <= 4; lengthBytes++) {
    const remaining = total - 1 - lengthBytes
    if (remaining < 128 ** lengthBytes) {
      const bytes = [0x10]
      let rest = remaining
      do {
        let byte = rest % 128
        rest = Math.floor(rest / 128)
        if (rest > 0) byte |= 0x80
        bytes.push(byte)
      } while (rest > 0)
      if (bytes.length === 1 + lengthBytes) return Buffer.from(bytes)
    }
  }
  throw new Error(`no fixed header announces ${total} bytes`)
}

/** Opens `count` sockets to the broker's MQTT port, each writing `bytes`; resolves once each write is done or the socket closed. */
async function openSockets (t: Test, broker: ChildBroker, count: number, bytes: Buffer): Promise<Socket[]> {
  const sockets: Socket[] = []
  t.teardown(() => { for (const socket of sockets) socket.destroy() })
  // a few hundred at a time: the listen backlog is finite
  for (let i = 0; i < count; i += 250) {
    await Promise.all(Array.from({ length: Math.min(250, count - i) }, async () => {
      const socket = tcpConnect(broker.ports.mqtt, '127.0.0.1')
      sockets.push(socket)
      socket.on('error', () => {}) // refused ones are reset
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve())
        socket.once('connect', () => socket.write(bytes, () => resolve()))
      })
    }))
  }
  return sockets
}

/** Writes `bytes` to each socket the broker has not closed; resolves once each write is done or failed. */
async function writeEach (sockets: Socket[], bytes: Buffer): Promise<void> {
  await Promise.all(sockets.filter((socket) => !socket.destroyed && socket.readyState === 'open').map(async (socket) => {
    await new Promise<void>((resolve) => socket.write(bytes, () => resolve()))
  }))
}

/** Waits until the broker has read every byte sent to its MQTT port: no receive queue of that port in /proc/net/tcp holds any. */
async function brokerHasRead (mqttPort: number): Promise<void> {
  const port = mqttPort.toString(16).toUpperCase().padStart(4, '0')
  await eventually('the broker has read every byte sent to it', async () => {
    const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    // local_address is the broker's side; rx_queue is what its process has not read yet
    return lines.every((line) => {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 5 || !(fields[1] ?? '').endsWith(`:${port}`)) return true
      return (fields[4] ?? '').split(':')[1] === '00000000'
    })
  }, 30_000)
}

/** The broker's RSS in bytes after a full garbage collection. */
async function liveRss (broker: ChildBroker): Promise<number> {
  const before = new Set(broker.logs.filter((line) => line.msg === 'gc'))
  broker.child.kill('SIGUSR2')
  await broker.nextLog((line) => line.msg === 'gc' && !before.has(line))
  return await stableRss(broker)
}

/** The broker's RSS in bytes once it has stopped moving (five reads 100 ms apart within 256 kB), or after 15 s. */
async function stableRss (broker: ChildBroker): Promise<number> {
  const rss = (): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${broker.child.pid}/status`, 'utf8'))?.[1]) * 1024
  const readings = [rss()]
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    await delay(100)
    readings.push(rss())
    const last = readings.slice(-5)
    if (last.length === 5 && Math.max(...last) - Math.min(...last) <= 256 * 1024) break
  }
  return readings.at(-1) as number
}

async function metric (broker: ChildBroker, name: string): Promise<number> {
  return await scrape(`http://127.0.0.1:${broker.ports.http}/metrics`, name)
}

async function httpMetric (broker: TestBroker, name: string): Promise<number> {
  return await scrape(`http://127.0.0.1:${broker.ports.http}/metrics`, name)
}

async function scrape (url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text()
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}
