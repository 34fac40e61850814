import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { FrameLimit } from '../../src/transport/frame-limit.js'

const publish = (size: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(size), qos: 0, retain: false, dup: false })

t.test('packets up to the limit pass, whole or byte by byte', async (t) => {
  const packet = publish(100)
  const limit = new FrameLimit(packet.length)
  t.equal(limit.feed(Buffer.concat([packet, packet])), null)
  const byteByByte = new FrameLimit(packet.length)
  for (const byte of packet) t.equal(byteByByte.feed(Buffer.from([byte])), null)
  t.equal(byteByByte.feed(mqttPacket.generate({ cmd: 'pingreq' })), null, 'a zero-length packet follows')
})

t.test('a packet one byte over the limit is refused from its header alone', async (t) => {
  const packet = publish(100)
  const limit = new FrameLimit(packet.length - 1)
  const error = limit.feed(packet.subarray(0, 3))
  t.match(error?.message, /exceeds limits.maxPacketBytes/)
})

t.test('the second packet of a chunk is measured too', async (t) => {
  const small = publish(10)
  const limit = new FrameLimit(small.length)
  t.match(limit.feed(Buffer.concat([small, publish(11)]))?.message, /exceeds/)
})

t.test('a remaining length longer than four bytes is malformed', async (t) => {
  const limit = new FrameLimit(268435455 + 5)
  t.match(limit.feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff]))?.message, /malformed/)
})

t.test('the largest MQTT packet length decodes exactly', async (t) => {
  // 0xff 0xff 0xff 0x7f = 268,435,455, the largest remaining length MQTT allows
  t.equal(new FrameLimit(268435455 + 5).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])), null)
  t.match(new FrameLimit(268435455 + 4).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]))?.message, /exceeds/)
})

const connect = (passwordBytes: number): Buffer =>
  mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'c', keepalive: 30, username: 'u', password: Buffer.alloc(passwordBytes, 0x61) })

t.test('with a CONNECT limit, the first packet gets it and later packets get the packet limit', async (t) => {
  const first = connect(100)
  const limit = new FrameLimit(4096, first.length)
  t.ok(limit.awaitingConnect)
  t.equal(limit.feed(first.subarray(0, 10)), null)
  t.ok(limit.awaitingConnect, 'until the whole CONNECT has gone by')
  t.equal(limit.feed(Buffer.concat([first.subarray(10), publish(1000)])), null, 'a PUBLISH larger than the CONNECT limit follows')
  t.notOk(limit.awaitingConnect)
  t.match(limit.feed(publish(4096))?.message, /exceeds limits.maxPacketBytes/)
})

t.test('a CONNECT one byte over the CONNECT limit is refused from its header', async (t) => {
  const first = connect(100)
  const error = new FrameLimit(4096, first.length - 1).feed(first.subarray(0, 3))
  t.equal(error?.violation, 'too_large')
  t.match(error?.message, /CONNECT of \d+ bytes exceeds limits.maxConnectBytes/)
})

t.test('a first packet that is not a CONNECT is refused from its first byte [MQTT-3.1.0-1]', async (t) => {
  const error = new FrameLimit(4096, 1024).feed(publish(10).subarray(0, 1))
  t.equal(error?.violation, 'not_connect')
  t.equal(new FrameLimit(4096).feed(publish(10)), null, 'without a CONNECT limit any packet may come first')
})

t.test('the CONNECT limit is never above the packet limit', async (t) => {
  t.equal(new FrameLimit(200, 1000).feed(connect(300).subarray(0, 3))?.violation, 'too_large')
})
