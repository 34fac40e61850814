import { once } from 'node:events'
import { Duplex, Writable } from 'node:stream'
import { setImmediate as nextTurn } from 'node:timers/promises'
import mqttPacket from 'mqtt-packet'
import { pino } from 'pino'
import t from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { GuardedStream } from '../../src/transport/guarded-stream.js'
import { maxConnectBytes, PendingConnects, type PreAuthRefusal } from '../../src/transport/pre-auth.js'

/** A connection whose peer's bytes the test pushes. */
class PeerConnection extends Duplex {
  override _read (): void {}
  override _write (_chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void { callback() }
}

function pendingConnects (options: { maxPerIp?: number, maxConnectBytes?: number } = {}): { pending: PendingConnects, refusals: PreAuthRefusal[], logs: Array<Record<string, unknown>> } {
  const refusals: PreAuthRefusal[] = []
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _encoding, done) { logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
  const pending = new PendingConnects({
    maxConnectBytes: options.maxConnectBytes ?? 1024,
    maxPerIp: options.maxPerIp ?? 2,
    logger: pino({ level: 'info' }, sink),
    onRefused: (reason) => refusals.push(reason),
  })
  t.teardown(() => pending.close())
  return { pending, refusals, logs }
}

const connectPacket = (password: Buffer | string, extra: Partial<mqttPacket.IConnectPacket> = {}): Buffer =>
  mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'c', keepalive: 30, username: 'u', password: Buffer.from(password), ...extra })

t.test('the CONNECT limit is derived from the token, client id and topic limits unless set', async (t) => {
  const defaults = loadConfig({ env: {} })
  t.equal(defaults.limits.maxConnectBytes, null, 'null by default')
  t.equal(maxConnectBytes(defaults), 10880, '512 + 8192 + 3 × (128 + 256) + 1024')
  t.equal(maxConnectBytes(loadConfig({ env: {}, overrides: { auth: { jwt: { maxTokenBytes: 16384 } } } })), 10880 + 8192, 'follows auth.jwt.maxTokenBytes')
  t.equal(maxConnectBytes(loadConfig({ env: {}, overrides: { limits: { maxConnectBytes: 4000 } } })), 4000, 'an explicit value wins')
  t.equal(maxConnectBytes(loadConfig({ env: {}, overrides: { limits: { maxPacketBytes: 2048 } } })), 2048, 'never above limits.maxPacketBytes')

  // the largest CONNECT the other limits allow: a token of maxTokenBytes, client id and will topic at their
  // limits in 3-byte characters, a 1 KiB will payload, and a generous username
  const { limits, auth } = defaults
  const largest = connectPacket('t'.repeat(auth.jwt.maxTokenBytes), {
    protocolId: 'MQIsdp',
    protocolVersion: 3,
    clientId: '\u20ac'.repeat(limits.maxClientIdLength),
    username: 'u'.repeat(256),
    will: { topic: '\u20ac'.repeat(limits.maxTopicLength), payload: Buffer.alloc(1024), qos: 1, retain: false },
  })
  t.ok(largest.length <= maxConnectBytes(defaults), `a CONNECT of ${largest.length} bytes fits`)
})

t.test('each address may have maxPerIp connections whose CONNECT has not arrived', async (t) => {
  const { pending, refusals, logs } = pendingConnects({ maxPerIp: 2 })
  t.ok(pending.admit('10.0.0.1'))
  t.ok(pending.admit('10.0.0.1'))
  t.notOk(pending.admit('10.0.0.1'), 'the third is refused')
  t.ok(pending.admit('10.0.0.2'), 'another address is not affected')
  t.equal(pending.size, 3)
  pending.settled('10.0.0.1', null)
  t.ok(pending.admit('10.0.0.1'), 'a settled connection makes room')
  t.notOk(pending.admit('10.0.0.1'))
  t.same(refusals, ['pending_per_ip', 'pending_per_ip'])
  t.equal(logs.length, 1, 'one warn line per 10 s at most')
  t.equal(logs[0]?.level, 40)
  t.equal(logs[0]?.refused, 1)
  t.equal(logs[0]?.ip, '10.0.0.1')

  const uncapped = pendingConnects({ maxPerIp: 0 }).pending
  const admitted = Array.from({ length: 1000 }, () => uncapped.admit('10.0.0.1')).filter(Boolean).length
  t.equal(admitted, 1000, '0: no cap')
})

t.test('a GuardedStream settles its pre-auth phase once, when its CONNECT has arrived', async (t) => {
  const { pending, refusals } = pendingConnects({ maxPerIp: 1, maxConnectBytes: 1024 })
  const inner = new PeerConnection()
  t.ok(pending.admit('10.0.0.1'))
  let connected = 0
  const stream = new GuardedStream(inner, 4096, '10.0.0.1', pending, () => connected++)
  t.teardown(() => stream.destroy())
  const received: Buffer[] = []
  stream.on('data', (chunk: Buffer) => received.push(chunk))

  const connect = connectPacket('token')
  inner.push(connect.subarray(0, 5))
  await nextTurn()
  t.equal(pending.size, 1, 'part of the CONNECT: still pending')
  t.equal(connected, 0)
  const publish = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false })
  inner.push(Buffer.concat([connect.subarray(5), publish]))
  await nextTurn()
  t.equal(pending.size, 0, 'the whole CONNECT: settled')
  t.equal(connected, 1, 'the transport is told once')
  t.ok(pending.admit('10.0.0.1'), 'its address has room again')
  t.same(Buffer.concat(received), Buffer.concat([connect, publish]), 'every byte passed on, the PUBLISH after it above the CONNECT limit')
  stream.destroy()
  await once(stream, 'close')
  t.equal(pending.size, 1, 'closing an authenticated connection changes nothing')
  t.same(refusals, [])
})

t.test('a connection closed before its CONNECT arrived is settled; a bad first packet is counted', async (t) => {
  const { pending, refusals } = pendingConnects({ maxPerIp: 5, maxConnectBytes: 64 })
  const cases: Array<[string, Buffer | null, PreAuthRefusal | null]> = [
    ['closed by its peer', null, null],
    ['a CONNECT over the limit', connectPacket('x'.repeat(100)).subarray(0, 4), 'connect_too_large'],
    ['a PUBLISH first', mqttPacket.generate({ cmd: 'pingreq' }), 'not_connect'],
  ]
  for (const [name, bytes] of cases) {
    t.ok(pending.admit('10.0.0.1'))
    const inner = new PeerConnection()
    let connected = 0
    const stream = new GuardedStream(inner, 4096, '10.0.0.1', pending, () => connected++)
    stream.on('error', () => {}) // the violation
    stream.resume()
    const closed = new Promise((resolve) => stream.once('close', resolve))
    if (bytes === null) inner.destroy()
    else inner.push(bytes)
    await closed
    t.equal(pending.size, 0, `${name}: settled`)
    t.equal(connected, 0, `${name}: the transport is not told of a CONNECT`)
    t.ok(inner.destroyed)
  }
  t.same(refusals, ['connect_too_large', 'not_connect'])
})
