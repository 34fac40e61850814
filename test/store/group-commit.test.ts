import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { groupCommitTarget } from '../../src/store/batch-target.js'
import { GroupCommit, type BatchOperation, type BatchTarget } from '../../src/store/group-commit.js'
import { openDatabase } from '../../src/store/open-store.js'
import { makeTempDir } from '../helpers/broker.js'

/** Records each batch; `hold` keeps the next batches unwritten until `release()`. */
class RecordingTarget implements BatchTarget {
  readonly batches: BatchOperation[][] = []
  hold = false
  failNext = false
  #held: Array<() => void> = []
  #batchWaiters: Array<() => void> = []

  async batch (operations: BatchOperation[]): Promise<void> {
    this.batches.push(operations)
    for (const resolve of this.#batchWaiters.splice(0)) resolve()
    if (this.failNext) {
      this.failNext = false
      throw new Error('disk full')
    }
    if (this.hold) await new Promise<void>((resolve) => this.#held.push(resolve))
  }

  /** Resolves when the next batch reaches the target. */
  async nextBatch (): Promise<void> {
    await new Promise<void>((resolve) => this.#batchWaiters.push(resolve))
  }

  release (): void {
    this.hold = false
    for (const resolve of this.#held.splice(0)) resolve()
  }

  /** Lets the held batch at `index` (in the order they reached the target, among those still held) finish; the others stay held. */
  releaseOne (index = 0): void {
    const [resolve] = this.#held.splice(index, 1)
    resolve?.()
  }
}

const keysOf = (target: RecordingTarget): string[][] => target.batches.map((batch) => batch.map((op) => `${op.type}:${op.key}`))
const turn = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }

const put = (key: string): BatchOperation => ({ type: 'put', key, value: Buffer.from(key) })

t.test('writes asked for in one turn are one batch; the last operation on a key wins', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target)
  await Promise.all([commit.write([put('a'), put('b')]), commit.write([put('c')]), commit.write([{ type: 'del', key: 'a' }])])
  t.same(target.batches.map((batch) => batch.map((op) => `${op.type}:${op.key}`)), [['del:a', 'put:b', 'put:c']])
})

t.test('settled() waits for what was asked before it, not for later writes', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target)
  t.equal(await commit.settled(), undefined, 'nothing pending: at once')
  target.hold = true
  void commit.write([put('1')])
  let settled = false
  const waiting = commit.settled().then(() => { settled = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(settled, 'the batch is still being written')
  target.release()
  await waiting
  t.ok(settled)
})

t.test('writes asked for while a batch is being written wait for it and go together next', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target)
  target.hold = true
  let firstDone = false
  const first = commit.write([put('1')]).then(() => { firstDone = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(target.batches.length, 1, 'the first batch is being written')
  const later = [commit.write([put('2')]), commit.write([put('3')])]
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(target.batches.length, 1, 'nothing else starts while it is written')
  t.notOk(firstDone)
  target.release()
  await first
  await Promise.all(later)
  t.same(target.batches.map((batch) => batch.map((op) => op.key)), [['1'], ['2', '3']])
})

t.test('a failed batch rejects its own writers only', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target)
  target.failNext = true
  const failed = Promise.allSettled([commit.write([put('x')]), commit.write([put('y')])])
  t.same((await failed).map((r) => r.status), ['rejected', 'rejected'])
  await commit.write([put('z')])
  t.same(target.batches.map((batch) => batch.map((op) => op.key)), [['x', 'y'], ['z']])
})

t.test('an empty write writes nothing', async (t) => {
  const target = new RecordingTarget()
  await new GroupCommit(target).write([])
  t.same(target.batches, [])
})

t.test('withdraw takes back an operation still waiting for its batch, not one already being written', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target)
  target.hold = true
  const first = commit.write([put('written')])
  await new Promise((resolve) => setImmediate(resolve))
  const second = commit.write([put('waiting'), put('kept')])
  t.ok(commit.withdraw('waiting'))
  t.notOk(commit.withdraw('written'), 'already in the batch being written')
  t.notOk(commit.withdraw('unknown'))
  target.release()
  await Promise.all([first, second])
  t.same(target.batches.map((batch) => batch.map((op) => op.key)), [['written'], ['kept']])
})

t.test('held writes go out together once the hold is over, in their own batch if nothing else is written', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { holdMs: 20 })
  // the hold timer is unref'd: something has to keep this process alive meanwhile
  const keepAlive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(keepAlive))
  const asked = Date.now()
  commit.writeHeld([put('a'), put('b')])
  commit.writeHeld([{ type: 'del', key: 'c' }])
  await new Promise((resolve) => setImmediate(resolve))
  t.same(target.batches, [], 'held, not written at the end of the turn')
  await target.nextBatch()
  t.ok(Date.now() - asked >= 19, 'written after the hold')
  t.same(keysOf(target), [['put:a', 'put:b', 'del:c']])
})

t.test('a held put is replaced by a later held or waited-for operation on its key, and taken back by withdraw', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { holdMs: 60_000 })
  let encoded = 0
  const lazy = (key: string) => ({ type: 'put' as const, key, value: () => { encoded++; return Buffer.from(key) } })
  commit.writeHeld([lazy('replaced-by-held'), lazy('replaced-by-write'), lazy('withdrawn'), lazy('kept')])
  commit.writeHeld([{ type: 'del', key: 'replaced-by-held' }])
  await commit.write([put('replaced-by-write')])
  t.same(keysOf(target), [['put:replaced-by-write']], 'the waited-for write went out at once, without the held operations')
  t.ok(commit.withdraw('withdrawn'))
  t.notOk(commit.withdraw('withdrawn'), 'only once')
  await commit.settled()
  t.same(keysOf(target), [['put:replaced-by-write'], ['del:replaced-by-held', 'put:kept']], 'settled() sends what is held and waits for it')
  t.equal(encoded, 1, 'only the put that was written computed its value')
  t.same(target.batches[1]?.[1], put('kept'))
})

t.test('a held operation asked after a waited-for one on the same key wins over it', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { holdMs: 60_000 })
  target.hold = true
  const first = commit.write([put('k')])
  await new Promise((resolve) => setImmediate(resolve))
  commit.writeHeld([{ type: 'del', key: 'k' }])
  const settled = commit.settled()
  target.release()
  await Promise.all([first, settled])
  t.same(keysOf(target), [['put:k'], ['del:k']], 'the put was being written: the delete goes next')

  const sameBatch = new RecordingTarget()
  const other = new GroupCommit(sameBatch, { holdMs: 60_000 })
  const written = other.write([put('k')])
  other.writeHeld([{ type: 'del', key: 'k' }])
  await Promise.all([written, other.settled()])
  t.same(keysOf(sameBatch), [['del:k']], 'the put still waited for its batch: the delete replaces it there')
})

t.test('a failed batch of held operations is reported to onHeldError', async (t) => {
  const target = new RecordingTarget()
  const errors: unknown[] = []
  const commit = new GroupCommit(target, { holdMs: 60_000, onHeldError: (err) => errors.push(err) })
  target.failNext = true
  commit.writeHeld([put('lost')])
  await commit.settled()
  t.equal(errors.length, 1)
  t.match(errors[0], { message: 'disk full' })
})

t.test('spacingMs: a batch soon after the last waits until spacingMs has passed since it started; after a pause one leaves at once', async (t) => {
  const target = new RecordingTarget()
  const spacingMs = 200
  const commit = new GroupCommit(target, { spacingMs })
  const started = performance.now()
  await commit.write([put('1')])
  t.ok(performance.now() - started < spacingMs, 'the first batch leaves at once')
  const firstDone = performance.now()
  const later = Promise.all([commit.write([put('2')]), commit.write([put('3')])])
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(target.batches.length, 1, 'the next batch gathers while the spacing runs')
  await later
  // timers may fire up to a millisecond early by rounding
  t.ok(performance.now() - started >= spacingMs - 1, `it left after the spacing (${Math.round(performance.now() - firstDone)} ms after the first was written)`)
  t.same(target.batches.map((batch) => batch.map((op) => op.key)), [['1'], ['2', '3']])

  await new Promise((resolve) => setTimeout(resolve, spacingMs))
  const afterPause = performance.now()
  await commit.write([put('4')])
  t.ok(performance.now() - afterPause < spacingMs, 'after a pause longer than the spacing: at once')
  t.equal(target.batches.length, 3)
})

t.test('spacingMs: settled() waits for a batch held by the spacing', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { spacingMs: 100 })
  await commit.write([put('1')])
  void commit.write([put('2')])
  await commit.settled()
  t.same(target.batches.map((batch) => batch.map((op) => op.key)), [['1'], ['2']])
})

t.test('maxWriting: a batch whose keys no batch being written has leaves at once; one that shares a key waits for that write', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { maxWriting: 3 })
  target.hold = true
  const first = commit.write([put('a')])
  await turn()
  const second = commit.write([put('b')])
  await turn()
  t.same(keysOf(target), [['put:a'], ['put:b']], 'the second batch left while the first is still being written')

  const third = Promise.all([commit.write([{ type: 'del', key: 'a' }]), commit.write([put('c')])])
  await turn()
  t.equal(target.batches.length, 2, 'a batch with a key being written waits, though one more batch could be written')

  target.releaseOne(1)
  await second
  await turn()
  t.equal(target.batches.length, 2, 'the end of an unrelated write does not let it go')

  target.hold = false
  target.releaseOne(0)
  await first
  await third
  t.same(keysOf(target), [['put:a'], ['put:b'], ['del:a', 'put:c']], 'it left once the write of its key was done')
})

t.test('maxWriting: no more batches are written at once than it allows', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { maxWriting: 2 })
  target.hold = true
  const writes = [commit.write([put('1')])]
  await turn()
  writes.push(commit.write([put('2')]))
  await turn()
  writes.push(commit.write([put('3')]))
  await turn()
  t.same(keysOf(target), [['put:1'], ['put:2']], 'the third waits: two are being written')
  target.hold = false
  target.releaseOne(1)
  await target.nextBatch()
  t.same(keysOf(target), [['put:1'], ['put:2'], ['put:3']], 'it leaves when one of them is done')
  target.release()
  await Promise.all(writes)
})

t.test('maxWriting: settled() waits for every batch being written, whichever finishes first', async (t) => {
  const target = new RecordingTarget()
  const commit = new GroupCommit(target, { maxWriting: 2 })
  target.hold = true
  void commit.write([put('1')])
  await turn()
  void commit.write([put('2')])
  await turn()
  let settled = false
  const waiting = commit.settled().then(() => { settled = true })
  target.releaseOne(1)
  await turn()
  await turn()
  t.notOk(settled, 'the first batch is still being written')
  target.releaseOne(0)
  await waiting
  t.ok(settled)
})

t.test('maxWriting on a real LevelDB: batches land out of order, yet what is stored is the last operation asked for on each key', async (t) => {
  const dir = await makeTempDir(t)
  const db = await openDatabase(dir)
  t.teardown(async () => await db.close())
  // each batch reaches LevelDB after its own delay, so batches on their way together land in another order than asked
  const level = groupCommitTarget(db)
  const delaysMs = [30, 0, 20, 10]
  let batches = 0
  let writing = 0
  let mostWriting = 0
  const arrived: number[] = []
  /** for each key, the batches that wrote it, in the order they reached LevelDB */
  const landed = new Map<string, number[]>()
  const target: BatchTarget = {
    batch: async (operations, options) => {
      const n = batches++
      mostWriting = Math.max(mostWriting, ++writing)
      await sleep(delaysMs[n % delaysMs.length] as number)
      arrived.push(n)
      for (const operation of operations) landed.set(operation.key, [...landed.get(operation.key) ?? [], n])
      await level.batch(operations, options)
      writing--
    },
  }
  const commit = new GroupCommit(target, { maxWriting: 4 })
  const expected = new Map<string, string | undefined>()
  const writes: Array<Promise<void>> = []
  // a turn each: one of 3 shared keys (a batch shares it with the batch 3 turns before) and a key of its own
  for (let round = 0; round < 40; round++) {
    const shared = `shared-${round % 3}`
    if (round % 5 === 4) {
      writes.push(commit.write([{ type: 'del', key: shared }]))
      expected.set(shared, undefined)
    } else {
      writes.push(commit.write([{ type: 'put', key: shared, value: Buffer.from(`${shared}@${round}`) }]))
      expected.set(shared, `${shared}@${round}`)
    }
    writes.push(commit.write([{ type: 'put', key: `own-${round}`, value: Buffer.from(`own@${round}`) }]))
    expected.set(`own-${round}`, `own@${round}`)
    await turn()
  }
  await Promise.all(writes)
  await commit.settled()
  t.ok(mostWriting > 1 && mostWriting <= 4, `batches were on their way together, at most maxWriting (${mostWriting})`)
  t.not(arrived.join(), [...arrived].sort((a, b) => a - b).join(), 'some batches reached LevelDB before batches asked for earlier')
  for (const key of ['shared-0', 'shared-1', 'shared-2']) {
    const order = landed.get(key) ?? []
    t.same(order, [...order].sort((a, b) => a - b), `${key}: its batches reached LevelDB in the order asked for`)
  }
  for (const [key, value] of expected) {
    const stored = await db.get(key, { valueEncoding: 'utf8' })
    t.equal(stored, value, `${key}: ${value ?? 'deleted'}`)
  }
})
