/**
 * `limits.maxSubscriptionsPerClient`: a connection holds at most this many
 * subscriptions; a SUBSCRIBE's filters beyond it get SUBACK 0x80, one by
 * one, the others are granted. A filter the connection already holds is
 * replaced, not added, so it always passes. One client once held 20,000.
 *
 * aedes authorizes every filter of a SUBSCRIBE before it adds any of them to
 * the connection's subscriptions, and for a persistent session adds them only
 * after writing them to LevelDB: the filters granted but not yet added are
 * counted here (`pending`) until the connection's subscriptions hold them.
 *
 * The filters refused here must not reach the persistent session either:
 * aedes 1.2 writes the SUBSCRIBE's whole filter list into the session store
 * (lib/handlers/subscribe.js `storeSubscriptions`), and the session store
 * asks `wasRefused` (hooks.ts' subscription guard). For that answer to be
 * known when the first filter is stored, the hook must decide every filter of
 * the packet before it answers any (it answers on the next tick).
 */
export class SubscriptionLimit<C extends object> {
  readonly #max: number
  /** per connection: filters granted and not yet in its subscriptions */
  readonly #pending = new WeakMap<C, Set<string>>()
  /** per connection: filters refused for the limit, until granted again */
  readonly #refused = new WeakMap<C, Set<string>>()

  constructor (max: number) {
    this.#max = max
  }

  /** Whether the connection, holding `current`, may subscribe to `filter` too. */
  admit (client: C, current: Readonly<Record<string, unknown>>, filter: string): boolean {
    const pending = this.#pending.get(client)
    if (Object.hasOwn(current, filter) || pending?.has(filter) === true) {
      this.#refused.get(client)?.delete(filter)
      return true
    }
    let held = 0
    for (const _ in current) held++
    if (pending !== undefined) {
      for (const granted of pending) if (Object.hasOwn(current, granted)) pending.delete(granted)
      held += pending.size
    }
    if (held >= this.#max) {
      let refused = this.#refused.get(client)
      if (refused === undefined) this.#refused.set(client, refused = new Set())
      refused.add(filter)
      return false
    }
    if (pending === undefined) this.#pending.set(client, new Set([filter]))
    else pending.add(filter)
    this.#refused.get(client)?.delete(filter)
    return true
  }

  /**
   * The connection's SUBSCRIBE (or session restore) is done: its granted filters are in its
   * subscriptions, or were not added at all. Without this a filter granted and then unsubscribed
   * before the next SUBSCRIBE stayed counted for good.
   */
  settle (client: C): void {
    this.#pending.delete(client)
  }

  /** Whether the connection's latest SUBSCRIBE of `filter` was refused for the limit. */
  wasRefused (client: C, filter: string): boolean {
    return this.#refused.get(client)?.has(filter) === true
  }
}
