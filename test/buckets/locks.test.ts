import t from 'tap'
import { KeyedLocks } from '../../src/buckets/index.js'

/** A step that records its start and end and finishes when `release` is called. */
function gate (log: string[], name: string): { step: () => Promise<void>, release: () => void, started: Promise<void> } {
  let release!: () => void
  let markStarted!: () => void
  const started = new Promise<void>((resolve) => { markStarted = resolve })
  const done = new Promise<void>((resolve) => { release = resolve })
  return {
    step: async () => {
      log.push(`${name}+`)
      markStarted()
      await done
      log.push(`${name}-`)
    },
    release,
    started,
  }
}

t.test('shared holders run together; an exclusive one waits for them and holds back later ones', async (t) => {
  const locks = new KeyedLocks()
  const log: string[] = []
  const r1 = gate(log, 'r1')
  const r2 = gate(log, 'r2')
  const w = gate(log, 'w')
  const r3 = gate(log, 'r3')
  const all = [locks.shared('k', r1.step), locks.shared('k', r2.step), locks.exclusive('k', w.step), locks.shared('k', r3.step)]
  await Promise.all([r1.started, r2.started])
  t.strictSame(log, ['r1+', 'r2+'], 'both readers in, the writer waits')
  r1.release()
  r2.release()
  await w.started
  t.strictSame(log, ['r1+', 'r2+', 'r1-', 'r2-', 'w+'], 'the later reader waits behind the writer')
  w.release()
  await r3.started
  r3.release()
  await Promise.all(all)
  t.strictSame(log.slice(-3), ['w-', 'r3+', 'r3-'])
  t.equal(locks.size, 0, 'idle keys are forgotten')
})

t.test('exclusive holders of one key run one at a time, in order; other keys are independent', async (t) => {
  const locks = new KeyedLocks()
  const log: string[] = []
  const a1 = gate(log, 'a1')
  const a2 = gate(log, 'a2')
  const b = gate(log, 'b')
  const all = [locks.exclusive('a', a1.step), locks.exclusive('a', a2.step), locks.exclusive('b', b.step)]
  await Promise.all([a1.started, b.started])
  t.strictSame(log, ['a1+', 'b+'])
  b.release()
  a1.release()
  await a2.started
  a2.release()
  await Promise.all(all)
  t.strictSame(log, ['a1+', 'b+', 'b-', 'a1-', 'a2+', 'a2-'])
})

t.test('a failing step releases the lock and passes its error on', async (t) => {
  const locks = new KeyedLocks()
  await t.rejects(locks.exclusive('k', async () => { throw new Error('boom') }), /boom/)
  t.equal(await locks.exclusive('k', async () => 42), 42)
  t.equal(locks.size, 0)
})
