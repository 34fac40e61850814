import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import t from 'tap'
import { WaitingRecipients } from '../../src/store/fresh-messages.js'
import { oldSpaceGrowth } from '../helpers/old-space.js'

const recipients = (n: number): Array<{ clientId: string }> => Array.from({ length: n }, (_, i) => ({ clientId: `device-${i}` }))
const packet = (messageId: number): PersistedPacket => ({ messageId } as unknown as PersistedPacket)

t.test('WaitingRecipients: who has not acknowledged, and what is in flight to each', async (t) => {
  const waiting = new WaitingRecipients([{ clientId: 'a' }, { clientId: 'b' }, { clientId: 'a' }, { clientId: 'c' }])
  t.equal(waiting.size, 3, 'a client subscribed twice waits once')
  waiting.inFlight('b', packet(7))
  t.same([...waiting.entries()], [['a', null], ['b', packet(7)], ['c', null]])
  t.equal(waiting.acknowledge('b'), true)
  t.equal(waiting.acknowledge('b'), false, 'a second PUBACK for the same message')
  t.equal(waiting.acknowledge('z'), false, 'not a recipient')
  t.equal(waiting.has('b'), false)
  t.equal(waiting.has('a'), true)
  waiting.inFlight('b', packet(8))
  t.same([...waiting.entries()], [['a', null], ['c', null]], 'an acknowledged recipient is not put back in flight')
  t.same(waiting.clientIds(), ['a', 'c'])
  t.equal(waiting.size, 2)
  t.ok(waiting.acknowledge('a') && waiting.acknowledge('c'))
  t.equal(waiting.size, 0)
  t.same(waiting.clientIds(), [])
})

t.test('the acknowledgements of a message promoted to the old generation leave no garbage there', async (t) => {
  const messages = 2000
  const fanOut = 100
  const all = Array.from({ length: messages }, () => new WaitingRecipients(recipients(fanOut)))
  const growth = oldSpaceGrowth(() => {
    for (const waiting of all) for (let i = 0; i < fanOut; i++) waiting.acknowledge(`device-${i}`)
  })
  t.equal(all.every((waiting) => waiting.size === 0), true)
  const maps = Array.from({ length: messages }, () => new Map(recipients(fanOut).map((r) => [r.clientId, null])))
  const mapGrowth = oldSpaceGrowth(() => {
    for (const map of maps) for (let i = 0; i < fanOut; i++) map.delete(`device-${i}`)
  })
  t.comment(`Map: ${(mapGrowth / messages).toFixed(0)} bytes per message`)
  // with a Map deleted from, each message's table shrank five times, in old space: ~4 kB per message
  t.ok(growth < messages * 256, `${(growth / messages).toFixed(0)} bytes of old space per message of ${fanOut} recipients (under 256)`)
})
