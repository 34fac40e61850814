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
