import t from 'tap'
import { GroupCommit, type BatchOperation, type BatchTarget } from '../../src/store/group-commit.js'

/** Records each batch; `hold` keeps the next batches unwritten until `release()`. */
class RecordingTarget implements BatchTarget {
  readonly batches: BatchOperation[][] = []
  hold = false
  failNext = false
  #held: Array<() => void> = []

  async batch (operations: BatchOperation[]): Promise<void> {
    this.batches.push(operations)
    if (this.failNext) {
      this.failNext = false
      throw new Error('disk full')
    }
    if (this.hold) await new Promise<void>((resolve) => this.#held.push(resolve))
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
