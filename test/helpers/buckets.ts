import type { Test } from 'tap'
import type { OutboundMessage } from '../../src/broker/broker-port.js'
import type { BucketEvent } from '../../src/buckets/index.js'
import { HeraldError, type ErrorCode } from '../../src/errors/index.js'

/** A broker stand-in that records what a bucket store publishes, and can be told to fail. */
export class Recorder {
  readonly messages: OutboundMessage[] = []
  fail: Error | undefined
  /** Runs at publish time, before the message counts as published (to look at the store then, or to hold the publish). */
  onPublish: ((message: OutboundMessage) => Promise<void>) | undefined
  readonly #waiters: Array<{ count: number, resolve: () => void }> = []

  readonly publish = async (message: OutboundMessage): Promise<void> => {
    if (this.fail !== undefined) throw this.fail
    await this.onPublish?.(message)
    this.messages.push(message)
    for (const waiter of [...this.#waiters]) {
      if (this.messages.length < waiter.count) continue
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }

  get events (): BucketEvent[] {
    return this.messages.map((m) => JSON.parse(m.payload.toString('utf8')) as BucketEvent)
  }

  /** Resolves once `count` messages were published in all (bound it with `within`). */
  async waitFor (count: number): Promise<void> {
    if (this.messages.length >= count) return
    await new Promise<void>((resolve) => this.#waiters.push({ count, resolve }))
  }
}

export async function rejectsWith (t: Test, promise: Promise<unknown>, code: ErrorCode, what: string): Promise<void> {
  try {
    await promise
    t.fail(`${what}: resolved`)
  } catch (err) {
    t.ok(err instanceof HeraldError, `${what}: a HeraldError`)
    t.equal((err as HeraldError).code, code, `${what}: ${code}`)
  }
}
