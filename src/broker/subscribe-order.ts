/**
 * A connection's PUBLISH waits for the SUBSCRIBEs it sent before it. aedes
 * handles all the packets of one socket read at once, and for a persistent
 * session a subscription goes live only after it is written to the session
 * store: a client that sent SUBSCRIBE and then PUBLISH to a topic it had just
 * subscribed to (in one write, or without waiting for the SUBACK, as mqtt.js
 * lets it) never got its own message back with clean = false, and did with
 * clean = true. Mosquitto handles a connection's packets in order; so does
 * Herald now, for this pair.
 *
 * Only SUBSCRIBEs of a connected client count: a resumed session's
 * subscriptions are restored before its CONNACK, through the same hook, and
 * end without the 'subscribe' event.
 */
export class SubscribeOrder<C extends object> {
  /** per connection: the filters of its SUBSCRIBEs in progress (aedes' subscription objects) */
  readonly #inProgress = new WeakMap<C, Set<object>>()
  /** per connection: what waits for them, in arrival order */
  readonly #waiting = new WeakMap<C, Array<() => void>>()

  /** aedes is authorizing one filter of a SUBSCRIBE. */
  started (client: C, subscription: object): void {
    let filters = this.#inProgress.get(client)
    if (filters === undefined) this.#inProgress.set(client, filters = new Set())
    filters.add(subscription)
  }

  /** The SUBSCRIBE of these filters is done (aedes' 'subscribe' event): they are live, or were refused. */
  finished (client: C, subscriptions: readonly object[]): void {
    const filters = this.#inProgress.get(client)
    if (filters === undefined) return
    for (const subscription of subscriptions) filters.delete(subscription)
    if (filters.size > 0) return
    this.#inProgress.delete(client)
    const waiting = this.#waiting.get(client)
    this.#waiting.delete(client)
    if (waiting !== undefined) for (const run of waiting) run()
  }

  /** Runs `run` now, or after the connection's SUBSCRIBEs in progress (and what waits for them already). */
  after (client: C, run: () => void): void {
    if (!this.#inProgress.has(client)) {
      run()
      return
    }
    const waiting = this.#waiting.get(client)
    if (waiting === undefined) this.#waiting.set(client, [run])
    else waiting.push(run)
  }
}
