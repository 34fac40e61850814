import { randomUUID } from 'node:crypto'

/**
 * A broker id whose text sorts by start time: the start in milliseconds,
 * base 36, fixed width, then a random UUID.
 *
 * aedes-persistence-level keys each queued message by
 * `outgoing:<client id>:<broker id>:<counter>`, and aedes replays a queue in
 * key order. aedes' default id is a random UUID per start, so the messages a
 * session queued under two broker runs came back in an order the ids' random
 * text decided: the messages queued after a restart could come before those
 * queued before it. With ids that sort by start, key order is the order
 * messages were queued in, across restarts, which is also what
 * `limits.maxQueuedMessagesPerSession` relies on to find a queue's oldest
 * messages (store/queue-bound.ts). Nine base-36 digits of milliseconds last
 * until the year 5188. No '/', '+' or '#': aedes puts the id in $SYS topics.
 */
export function sortableBrokerId (now: number = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}-${randomUUID()}`
}
