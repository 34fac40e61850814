import { once } from 'node:events'
import { Duplex } from 'node:stream'
import { setImmediate as nextTurn } from 'node:timers/promises'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { GuardedStream } from '../../src/transport/guarded-stream.js'

/** The connection under a GuardedStream: records each write it gets; `hold` keeps writes unacknowledged (a full socket). */
class RecordingConnection extends Duplex {
  readonly writes: Buffer[] = []
  #held: Array<() => void> = []
  hold = false

  constructor () {
    super({ highWaterMark: 16 })
  }

  override _read (): void {}

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writes.push(chunk)
    if (this.hold) this.#held.push(() => callback())
    else callback()
  }

  release (): void {
    this.hold = false
    for (const callback of this.#held.splice(0)) callback()
  }
}

const write = async (stream: GuardedStream, chunk: Buffer): Promise<void> => {
  await new Promise<void>((resolve, reject) => stream.write(chunk, (err) => err == null ? resolve() : reject(err)))
}

t.test('writes made in one event-loop turn reach the connection as one buffer, after the turn', async (t) => {
  const inner = new RecordingConnection()
  const stream = new GuardedStream(inner, 1024, '127.0.0.1')
  t.teardown(() => stream.destroy())
  stream.write(Buffer.from('ab'))
  stream.write(Buffer.from('cd'))
  stream.write(Buffer.from('ef'))
  t.equal(inner.writes.length, 0, 'nothing written during the turn')
  await nextTurn()
  t.same(inner.writes.map(String), ['abcdef'], 'one write with every byte in order')
  stream.write(Buffer.from('gh'))
  await nextTurn()
  t.same(inner.writes.map(String), ['abcdef', 'gh'], 'the next turn is its own write')
})

t.test('a corked packet written in pieces (as mqtt-packet does) is one write too', async (t) => {
  const inner = new RecordingConnection()
  const stream = new GuardedStream(inner, 1024, '127.0.0.1')
  t.teardown(() => stream.destroy())
  const packet = { cmd: 'publish', topic: 'a/b', payload: Buffer.from('hello'), qos: 0, retain: false, dup: false } as const
  mqttPacket.writeToStream(packet, stream)
  mqttPacket.writeToStream(packet, stream)
  await nextTurn()
  await nextTurn()
  const expected = mqttPacket.generate(packet)
  t.same(inner.writes, [Buffer.concat([expected, expected])])
})

t.test('a full connection holds the writer back until it drains, and nothing is lost', async (t) => {
  const inner = new RecordingConnection()
  inner.hold = true
  const stream = new GuardedStream(inner, 1024, '127.0.0.1')
  t.teardown(() => stream.destroy())
  const big = Buffer.alloc(70 * 1024, 1)
  let acknowledged = false
  const first = write(stream, big).then(() => { acknowledged = true })
  t.equal(inner.writes.length, 1, 'a write above the coalescing size goes out at once')
  await nextTurn()
  t.notOk(acknowledged, 'the writer waits while the connection is full')
  inner.release()
  await first
  t.ok(acknowledged, 'released by drain')
  await write(stream, Buffer.from('after'))
  await nextTurn()
  t.same(Buffer.concat(inner.writes), Buffer.concat([big, Buffer.from('after')]))
})

t.test('bytes written just before destroy (a refusing CONNACK) still reach the connection', async (t) => {
  const inner = new RecordingConnection()
  const stream = new GuardedStream(inner, 1024, '127.0.0.1')
  const connack = mqttPacket.generate({ cmd: 'connack', returnCode: 5, sessionPresent: false })
  stream.write(connack)
  stream.destroy()
  await once(stream, 'close')
  t.same(inner.writes, [connack])
  t.ok(inner.destroyed)
})

t.test('end() writes what is pending, then ends the connection', async (t) => {
  const inner = new RecordingConnection()
  const stream = new GuardedStream(inner, 1024, '127.0.0.1')
  stream.write(Buffer.from('last'))
  stream.end()
  await once(inner, 'finish')
  t.same(inner.writes.map(String), ['last'])
  stream.destroy()
})

t.test('incoming bytes pass through; an oversized packet destroys the stream before it is buffered', async (t) => {
  const inner = new RecordingConnection()
  const stream = new GuardedStream(inner, 64, '127.0.0.1')
  const received: Buffer[] = []
  stream.on('data', (chunk: Buffer) => received.push(chunk))
  const ping = mqttPacket.generate({ cmd: 'pingreq' })
  inner.push(ping)
  await nextTurn()
  t.same(received, [ping])
  const errored = once(stream, 'error')
  inner.push(mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(100), qos: 0, retain: false, dup: false }).subarray(0, 4))
  const [err] = await errored as [Error]
  t.match(err.message, /exceeds limits.maxPacketBytes/)
  t.equal(received.length, 1, 'no byte of the oversized packet was passed on')
  t.ok(inner.destroyed)
})
