import t from 'tap'
import { GroupCommit, type BatchOperation, type BatchTarget } from '../../src/store/group-commit.js'

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
}

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

const keysOf = (target: RecordingTarget): string[][] => target.batches.map((batch) => batch.map((op) => `${op.type}:${op.key}`))

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
