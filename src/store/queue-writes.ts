import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import { AckGate } from './ack-gate.js'
import type { FreshQueue } from './fresh-queue.js'
import type { GroupCommit } from './group-commit.js'
import type { QueueBound } from './queue-bound.js'
import type { SessionIndex } from './session-index.js'
import { encodeQueueEntry, outgoingKey } from './session-keys.js'

export interface QueueWritesOptions {
  /** the session store's sublevel: its keys as the root database stores them */
  readonly db: { prefixKey (key: string, keyFormat: 'utf8'): string }
  readonly commit: GroupCommit
  readonly fresh: FreshQueue
  readonly index: SessionIndex
  /** how long a message whose recipients are all connected waits for their acknowledgements (SessionStoreOptions.ackWaitMs) */
  readonly ackWaitMs: number
  readonly isConnected: (clientId: string) => boolean
  /** `limits.maxQueuedMessagesPerSession`, once the store was given it */
  readonly bound: () => QueueBound | undefined
}

/**
 * How the session store puts a QoS>0 message into its recipients' queues,
 * and the gate its publisher's PUBACK waits at (AckGate): one encoding of the
 * message, one queue entry for one recipient, one record of the message and
 * its recipients for several (FreshQueue), or nothing yet when all of them
 * are connected and the publisher waits.
 */
export class QueueWrites {
  readonly #options: QueueWritesOptions
  /** publishes whose publisher waits for release() */
  readonly #acks = new AckGate()

  constructor (options: QueueWritesOptions) {
    this.#options = options
  }

  /** SessionStore.expectAcknowledgement */
  expect (packet: { brokerId: string, brokerCounter: number }): void {
    this.#acks.expect(packet)
  }

  /** SessionStore.safeToAck */
  release (packet: { brokerId: string, brokerCounter: number }): Promise<void> | undefined {
    return this.#acks.release(packet)
  }

  /** The recipients the routing kept: their acknowledgements awaited when the publish was announced and all are connected, the message written otherwise. */
  async enqueueRouted (queued: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    const { ackWaitMs, isConnected, fresh } = this.#options
    const expected = this.#acks.of(packet)
    if (expected !== undefined && ackWaitMs > 0 && queued.every((sub) => isConnected(sub.clientId))) {
      this.#markQueued(queued)
      expected.safe = fresh.awaitAcks(queued, packet)
      return
    }
    await this.enqueue(queued, packet)
  }

  /**
   * One encoding of the message, durable when this resolves: for one
   * recipient, its queue entry; for several, one record of the message and
   * its recipients, whose queue entries come later (FreshMessage).
   */
  async enqueue (subs: ReadonlyArray<{ clientId: string }>, packet: PersistedPacket): Promise<void> {
    if (subs.length === 0) return
    this.#markQueued(subs)
    const only = subs.length === 1 ? subs[0] : undefined
    if (only === undefined) {
      await this.#options.fresh.write(subs, packet)
      return
    }
    try {
      await this.#options.commit.write([{ type: 'put', key: this.#options.db.prefixKey(outgoingKey(only.clientId, packet.brokerId, packet.brokerCounter), 'utf8'), value: encodeQueueEntry(packet) }])
    } catch (err) {
      this.#options.bound()?.removed(only.clientId)
      throw err
    }
  }

  /** Before a message is written to these clients' queues (or its record to one of them): the index and the queue bound count it. */
  #markQueued (subs: ReadonlyArray<{ clientId: string }>): void {
    const bound = this.#options.bound()
    for (const sub of subs) {
      this.#options.index.markQueued(sub.clientId)
      bound?.added(sub.clientId)
    }
  }
}
