import t from 'tap'
import { mergePatch, type JsonValue } from '../../src/buckets/index.js'

// RFC 7396 Appendix A: every example, original → patch → result
const examples: Array<[JsonValue, JsonValue, JsonValue]> = [
  [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
  [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
  [{ a: 'b' }, { a: null }, {}],
  [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
  [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
  [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
  [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
  [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
  [['a', 'b'], ['c', 'd'], ['c', 'd']],
  [{ a: 'b' }, ['c'], ['c']],
  [{ a: 'foo' }, null, null],
  [{ a: 'foo' }, 'bar', 'bar'],
  [{ e: null }, { a: 1 }, { e: null, a: 1 }],
  [[1, 2], { a: 'b', c: null }, { a: 'b' }],
  [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
]

t.test('RFC 7396 Appendix A', async (t) => {
  for (const [original, patch, result] of examples) {
    t.strictSame(mergePatch(original, patch), result, `${JSON.stringify(original)} + ${JSON.stringify(patch)}`)
  }
})

t.test('neither the target nor the patch is modified', async (t) => {
  const target = { a: { b: 1, c: 2 }, d: [1] }
  const patch = { a: { b: null, e: { f: 1 } } }
  const before = JSON.stringify([target, patch])
  const result = mergePatch(target, patch)
  t.strictSame(result, { a: { c: 2, e: { f: 1 } }, d: [1] })
  t.equal(JSON.stringify([target, patch]), before)
})
