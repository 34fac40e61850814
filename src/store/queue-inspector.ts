import { decodeFreshRecord, FRESH_PREFIX } from './fresh-messages.js'
import { clientIdOfKey, OUTGOING_PREFIX, outgoingPrefix, prefixRange } from './session-keys.js'

/** What is queued for persistent sessions, all of them together. */
export interface QueueTotals {
  /** sessions with at least one queued message */
  readonly sessions: number
  /** queued messages, every session's together (a message queued for two sessions counts twice) */
  readonly messages: number
}

/**
 * Read-only questions about the persistent sessions' queues, for operators
 * (the admin API, the queued-sessions and queued-messages gauges), answered
 * from the stored queues without going through the session store, so asking
 * never changes a queue (reading one through aedes' `outgoingStream` cuts it
 * to `limits.maxQueuedMessagesPerSession`, as at a CONNECT).
 *
 * A queue counts the messages stored for the session and not acknowledged:
 * those waiting and those in flight to a connected device. On LevelDB a
 * message for several sessions is first one record naming its recipients
 * (store/fresh-messages.ts), whose queue entries are written about a second
 * later for those that have not acknowledged it: such a record counts for
 * every recipient it names, so a connected device's count may include a
 * message it acknowledged within the last second or two.
 */
export interface QueueInspector {
  /** Messages queued for one client id: 0 for none, or no session. */
  depth (clientId: string): Promise<number>
  /** Sessions with queued messages and the messages, at most `maxAgeMs` old (the last count is reused until then). */
  totals (): Promise<QueueTotals>
}

/** The session store's sublevel (values as bytes). */
export interface QueueKeys {
  keys (range: { gte: string, lt: string }): AsyncIterable<string>
  iterator (range: { gte: string, lt: string }): AsyncIterable<[string, Buffer]>
}

/** How long a count of every queue is reused: it reads every queue key (LevelDB) or every queue's length (Redis). */
export const QUEUE_TOTALS_MAX_AGE_MS = 15_000

/** The queues of the LevelDB session store (session-keys.ts layout). */
export function levelQueueInspector (sessions: QueueKeys, maxAgeMs = QUEUE_TOTALS_MAX_AGE_MS): QueueInspector {
  /** The recipients of every message whose queue entries are not written yet (the last second or two of them). */
  async function * freshRecipients (): AsyncIterable<readonly string[]> {
    for await (const [, record] of sessions.iterator(prefixRange(FRESH_PREFIX))) {
      const decoded = decodeFreshRecord(record)
      if (decoded !== undefined) yield decoded.clientIds
    }
  }
  return {
    async depth (clientId) {
      let count = 0
      for await (const _key of sessions.keys(prefixRange(outgoingPrefix(clientId)))) count++
      for await (const recipients of freshRecipients()) if (recipients.includes(clientId)) count++
      return count
    },
    totals: reuseFor(maxAgeMs, async () => {
      let messages = 0
      const queued = new Set<string>()
      for await (const key of sessions.keys(prefixRange(OUTGOING_PREFIX))) {
        messages++
        queued.add(clientIdOfKey(key, OUTGOING_PREFIX))
      }
      for await (const recipients of freshRecipients()) {
        messages += recipients.length
        for (const clientId of recipients) queued.add(clientId)
      }
      return { sessions: queued.size, messages }
    }),
  }
}

/**
 * `count`, run at most once per `maxAgeMs`: callers within that time get the
 * last result, and callers while a count runs wait for that one.
 */
export function reuseFor<T> (maxAgeMs: number, count: () => Promise<T>): () => Promise<T> {
  let last: { at: number, value: T } | undefined
  let running: Promise<T> | undefined
  return async () => {
    if (last !== undefined && Date.now() - last.at < maxAgeMs) return last.value
    running ??= count().then((value) => {
      last = { at: Date.now(), value }
      return value
    }).finally(() => { running = undefined })
    return await running
  }
}
