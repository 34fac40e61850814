import { performance } from 'node:perf_hooks'
import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import t from 'tap'
import { freshRecordKey } from '../../src/store/fresh-messages.js'
import { FreshQueue } from '../../src/store/fresh-queue.js'
import { GroupCommit, type BatchOperation, type BatchTarget } from '../../src/store/group-commit.js'

/** Notes when each key is first written. */
class RecordingTarget implements BatchTarget {
  readonly writtenAt = new Map<string, number>()
  async batch (operations: BatchOperation[]): Promise<void> {
    for (const op of operations) if (!this.writtenAt.has(op.key)) this.writtenAt.set(op.key, performance.now())
  }
}

const db = {
  async * iterator (): AsyncIterable<[string, Buffer]> {},
  prefixKey: (key: string) => `!sessions!${key}`,
}

function packet (brokerCounter: number): PersistedPacket {
  return { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, brokerId: 'b', brokerCounter, messageId: undefined } as unknown as PersistedPacket
}

t.test('a message waiting for acknowledgements is written once its own ackWaitMs is up, whenever the timer was armed', async (t) => {
  const ackWaitMs = 400
  const target = new RecordingTarget()
  const queue = new FreshQueue({ db, commit: new GroupCommit(target), holdMs: 60_000, ackWaitMs, onDropped: () => {} })
  const recipients = [{ clientId: 'device' }]

  // A arms the timer and is never acknowledged; B comes 240 ms later
  const a = queue.awaitAcks(recipients, packet(1))
  await new Promise((resolve) => setTimeout(resolve, 240))
  const bCreated = performance.now()
  const b = queue.awaitAcks(recipients, packet(2))
  await Promise.all([a, b])
  const bWritten = target.writtenAt.get(db.prefixKey(freshRecordKey('b', 2)))
  t.ok(bWritten !== undefined, 'B was written')
  const waited = (bWritten as number) - bCreated
  t.ok(waited >= ackWaitMs - 5, `B waited its ackWaitMs before it was written (${waited.toFixed(0)} ms)`)
  // re-armed for a whole ackWaitMs after A's write, B waited ~560 ms
  t.ok(waited < ackWaitMs + 100, `B was written when its ackWaitMs was up, not a whole period after A's write (${waited.toFixed(0)} ms)`)
  queue.settle(Infinity)
})

t.test('acknowledged by every recipient in time: nothing is written, even when the ack-wait timer fires afterwards', async (t) => {
  const target = new RecordingTarget()
  const queue = new FreshQueue({ db, commit: new GroupCommit(target), holdMs: 60_000, ackWaitMs: 20, onDropped: () => {} })
  const safe = queue.awaitAcks([{ clientId: 'device' }], packet(1))
  t.equal(queue.inFlight('device', packet(1)), true)
  t.equal(queue.acknowledged('device', { brokerId: 'b', brokerCounter: 1 }), true)
  await safe
  // past ackWaitMs: the timer armed by this message has fired and found nothing to write
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.equal(target.writtenAt.size, 0, 'no record, no queue entry')
  queue.settle(Infinity)
})
