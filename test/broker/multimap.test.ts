import t from 'tap'
import { Multimap } from '../../src/broker/multimap.js'

const a = { name: 'a' }
const b = { name: 'b' }
const c = { name: 'c' }

t.test('values by key, one or many, added once each', async (t) => {
  const map = new Multimap<string, object>()
  t.equal(map.add('k', a), true)
  t.equal(map.add('k', a), false, 'the same value twice')
  t.same([...map.get('k')], [a])
  t.equal(map.add('k', b), true)
  t.equal(map.add('k', b), false)
  t.equal(map.add('k', c), true)
  t.same([...map.get('k')], [a, b, c])
  t.same([...map.get('other')], [], 'an absent key has no values')
  t.equal(map.size, 1)
})

t.test('deleting values; a key without values is gone', async (t) => {
  const map = new Multimap<string, object>()
  map.add('k', a)
  map.add('k', b)
  t.equal(map.delete('k', c), false, 'a value that is not there')
  t.equal(map.delete('x', a), false, 'a key that is not there')
  t.equal(map.delete('k', a), true)
  t.same([...map.get('k')], [b], 'back to one value')
  t.equal(map.delete('k', a), false)
  t.equal(map.add('k', c), true, 'and to two again')
  t.same([...map.get('k')], [b, c])
  t.equal(map.delete('k', b), true)
  t.equal(map.delete('k', c), true)
  t.equal(map.has('k'), false)
  t.equal(map.size, 0)
  map.add('single', a)
  t.equal(map.delete('single', b), false, 'another value than the only one')
  t.equal(map.delete('single', a), true)
  t.equal(map.has('single'), false)
})

t.test('take removes the key and returns its values', async (t) => {
  const map = new Multimap<number, object>()
  map.add(1, a)
  map.add(2, b)
  map.add(2, c)
  t.same(map.take(2), [b, c])
  t.same(map.take(1), [a])
  t.same(map.take(3), [])
  t.equal(map.size, 0)
})
