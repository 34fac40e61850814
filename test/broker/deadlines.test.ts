import t from 'tap'
import { Deadlines } from '../../src/broker/deadlines.js'

interface Item { readonly name: string }

// the deadlines' timer does not hold the process open (it is unref'd, like the broker's): this does, until the tests end
const hold = setInterval(() => {}, 60_000)
t.teardown(() => clearInterval(hold))

/** Deadlines whose due items are recorded with the time they came due; `dueCount(n)` resolves once n have. */
function recorder (resolutionMs: number): { deadlines: Deadlines<Item>, due: Array<{ item: Item, at: number }>, dueCount: (n: number) => Promise<void> } {
  const due: Array<{ item: Item, at: number }> = []
  const waiting: Array<{ n: number, resolve: () => void }> = []
  const deadlines = new Deadlines<Item>(resolutionMs, (item) => {
    due.push({ item, at: Date.now() })
    for (const w of waiting.filter((w) => due.length >= w.n)) w.resolve()
  })
  const dueCount = async (n: number): Promise<void> => {
    if (due.length >= n) return
    await new Promise<void>((resolve) => waiting.push({ n, resolve }))
  }
  return { deadlines, due, dueCount }
}

t.test('an item falls due at its deadline, never before', async (t) => {
  const { deadlines, due, dueCount } = recorder(20)
  const at = Date.now() + 60
  const item = { name: 'a' }
  deadlines.add(item, at)
  t.equal(deadlines.size, 1)
  await dueCount(1)
  t.equal(due[0]?.item, item)
  t.ok((due[0]?.at ?? 0) >= at, `due ${(due[0]?.at ?? 0) - at} ms after its deadline`)
  t.equal(deadlines.size, 0)
})

t.test('items fall due in deadline order, whatever the order they were added in', async (t) => {
  const { deadlines, due, dueCount } = recorder(10)
  const now = Date.now()
  const late = { name: 'late' }
  const early = { name: 'early' }
  const same = { name: 'same slot as early' }
  deadlines.add(late, now + 120)
  deadlines.add(early, now + 30)
  deadlines.add(same, now + 31)
  await dueCount(3)
  t.same(due.map((d) => d.item.name), ['early', 'same slot as early', 'late'])
})

t.test('a deleted item never falls due; the others still do', async (t) => {
  const { deadlines, due, dueCount } = recorder(10)
  const now = Date.now()
  const gone = { name: 'gone' }
  const alone = { name: 'alone in its slot' }
  const kept = { name: 'kept' }
  deadlines.add(gone, now + 20)
  deadlines.add(alone, now + 40)
  deadlines.add(kept, now + 40)
  deadlines.add(kept, now + 40)
  t.equal(deadlines.size, 3, 'an item added twice with the same deadline counts once')
  deadlines.delete(gone, now + 20)
  deadlines.delete(alone, now + 40)
  deadlines.delete(alone, now + 40)
  deadlines.delete({ name: 'never added' }, now + 40)
  t.equal(deadlines.size, 1)
  // 'kept' shares its slot with 'alone': once it is due, 'alone' would have been due too
  await dueCount(1)
  t.same(due.map((d) => d.item.name), ['kept'])
})

t.test('a deadline already past falls due at once', async (t) => {
  const { deadlines, due, dueCount } = recorder(1000)
  const item = { name: 'past' }
  deadlines.add(item, Date.now() - 5000)
  await dueCount(1)
  t.equal(due[0]?.item, item)
})

t.test('an item added while others fall due gets its own turn', async (t) => {
  const due: string[] = []
  let resolveLast: () => void = () => {}
  const last = new Promise<void>((resolve) => { resolveLast = resolve })
  const deadlines: Deadlines<Item> = new Deadlines<Item>(10, (item) => {
    due.push(item.name)
    if (item.name === 'first') deadlines.add({ name: 'added when first fell due' }, Date.now() + 20)
    else resolveLast()
  })
  deadlines.add({ name: 'first' }, Date.now() + 10)
  await last
  t.same(due, ['first', 'added when first fell due'])
})
