import { pino } from 'pino'
import t from 'tap'
import { openGarbageCollector } from '../../src/memory/collect-garbage.js'
import { StormReclaim } from '../../src/memory/storm-reclaim.js'

const silent = pino({ level: 'silent' })

/** A StormReclaim whose collections are counted, for `connections` and periods ended by hand. */
function counting (connections: number): { reclaim: StormReclaim, collections: () => number } {
  let collections = 0
  const reclaim = new StormReclaim({ connections, quietMs: 1000 }, async () => { collections++ }, silent)
  return { reclaim, collections: () => collections }
}

async function period (reclaim: StormReclaim, admitted: number): ReturnType<StormReclaim['endPeriod']> {
  for (let i = 0; i < admitted; i++) reclaim.connectionOpened()
  return await reclaim.endPeriod()
}

t.test('a storm is collected once, in the first quiet period after it', async (t) => {
  const { reclaim, collections } = counting(1000)
  // busy periods: at least a twentieth of 1,000 each
  t.equal(await period(reclaim, 400), undefined)
  t.equal(await period(reclaim, 400), undefined)
  t.equal(await period(reclaim, 200), undefined)
  t.equal(collections(), 0, 'nothing while the storm goes on')
  const reclaimed = await period(reclaim, 3)
  t.equal(collections(), 1, 'collected when it is over')
  t.equal(reclaimed?.connections, 1000, 'the storm\'s connections, not the quiet period\'s')
  t.equal(await period(reclaim, 0), undefined, 'once')
  t.equal(collections(), 1)
})

t.test('churn slower than a twentieth per period never makes a storm, however long it lasts', async (t) => {
  const { reclaim, collections } = counting(1000)
  for (let i = 0; i < 200; i++) await period(reclaim, 49)
  t.equal(collections(), 0)
})

t.test('a storm smaller than the setting is not collected, and a quiet period forgets it', async (t) => {
  const { reclaim, collections } = counting(1000)
  await period(reclaim, 600)
  await period(reclaim, 0)
  await period(reclaim, 600)
  t.equal(await period(reclaim, 0), undefined)
  t.equal(collections(), 0, 'two storms of 600 with a quiet period between are two small storms')
})

t.test('0 turns it off: no timer, no collection', async (t) => {
  const { reclaim, collections } = counting(0)
  t.equal(reclaim.enabled, false)
  reclaim.start()
  await period(reclaim, 5000)
  await period(reclaim, 0)
  t.equal(collections(), 0)
  await reclaim.stop()
})

t.test('a failed collection is logged, not thrown, and the next storm is collected again', async (t) => {
  let calls = 0
  const reclaim = new StormReclaim({ connections: 10, quietMs: 1000 }, async () => {
    if (++calls === 1) throw new Error('no inspector session')
  }, silent)
  await period(reclaim, 10)
  t.equal(await period(reclaim, 0), undefined)
  await period(reclaim, 10)
  t.equal((await period(reclaim, 0))?.connections, 10)
  t.equal(calls, 2)
})

t.test('the collector frees what nothing references and gives pages back', async (t) => {
  const collector = openGarbageCollector()
  if (collector === undefined) throw new Error('this Node has an inspector')
  t.teardown(() => { collector.close() })
  let target: object | undefined = { big: new Array(10_000).fill('x') }
  const ref = new WeakRef(target)
  target = undefined
  // a WeakRef's target is kept until the end of the job that made it
  await new Promise((resolve) => setImmediate(resolve))
  await collector.collect()
  t.equal(ref.deref(), undefined, 'collected')
})
