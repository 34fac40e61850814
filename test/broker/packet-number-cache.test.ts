import { createRequire } from 'node:module'
import t from 'tap'
import { startBroker } from '../helpers/broker.js'

/** mqtt-packet's cache of two-byte numbers, from the copy aedes uses. */
function numberCache (): Record<number, Buffer | undefined> {
  const packetMain = createRequire(import.meta.resolve('aedes')).resolve('mqtt-packet')
  return (createRequire(packetMain)('./numbers.js') as { cache: Record<number, Buffer | undefined> }).cache
}

t.test('the broker fills mqtt-packet\'s number cache when it starts, not at the first CONNACK', async (t) => {
  t.equal(numberCache()[0x1234], undefined, 'empty before: nothing in this process has written a packet')
  await startBroker(t)
  const cache = numberCache()
  t.equal(Object.keys(cache).length, 65536, 'every 16-bit number, with no client connected')
  t.same(cache[0x1234], Buffer.from([0x12, 0x34]))
})
