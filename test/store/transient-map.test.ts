import t from 'tap'
import { TransientMap } from '../../src/store/transient-map.js'
import { oldSpaceGrowth } from '../helpers/old-space.js'

t.test('works as a Map: set, get, has, size, delete (true only for a key it had), iteration in insertion order', async (t) => {
  const map = new TransientMap<number, string>()
  t.equal(map.size, 0)
  t.equal(map.delete(1), false, 'nothing to delete in an empty map')
  map.set(1, 'a').set(2, 'b')
  t.equal(map.get(1), 'a')
  t.equal(map.has(2), true)
  t.equal(map.size, 2)
  t.equal(map.delete(1), true)
  t.equal(map.has(1), false)
  t.equal(map.delete(3), false, 'an absent key, one entry left')
  t.equal(map.get(2), 'b', 'and the entry it had stays')
  t.equal(map.size, 1)
  t.equal(map.delete(2), true, 'the last entry')
  t.equal(map.size, 0)
  t.equal(map.get(2), undefined)
  map.set(3, 'c').set(4, 'd').set(3, 'C')
  t.same([...map], [[3, 'C'], [4, 'd']], 'insertion order; setting a key again keeps its place')
  t.same([...map.values()], ['C', 'd'])
})

t.test('an iteration deleting each entry as it goes visits every entry once, the last one included', async (t) => {
  const map = new TransientMap<number, string>()
  for (let i = 0; i < 5; i++) map.set(i, `v${i}`)
  const visited: number[] = []
  for (const [key] of map) {
    visited.push(key)
    map.delete(key)
  }
  t.same(visited, [0, 1, 2, 3, 4])
  t.equal(map.size, 0)
  map.set(9, 'again')
  t.same([...map], [[9, 'again']], 'usable after it emptied')
})

t.test('a broker-lifetime map with one entry per message in flight leaves no garbage in the old generation', async (t) => {
  const messages = 20_000
  /** Old-space growth over `messages` set-then-delete cycles, each with a new key (a broker counter), on a map promoted first. */
  const churn = (map: { set (key: number, value: object): unknown, delete (key: number): boolean }): number => oldSpaceGrowth(() => {
    for (let counter = 0; counter < messages; counter++) {
      map.set(counter, { counter })
      map.delete(counter)
    }
  })
  const transient = churn(new TransientMap<number, object>())
  const plain = churn(new Map<number, object>())
  t.comment(`old-space growth over ${messages} messages: TransientMap ${transient} bytes, Map ${plain} bytes`)
  // a Map reallocates its table in old space when its last entry goes: ~150 bytes per message here on Node 20
  t.ok(transient < messages * 4, `TransientMap: ${(transient / messages).toFixed(1)} bytes of old space per message (under 4)`)
})
