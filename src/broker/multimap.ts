/**
 * Sets of values by key, where a key with a single value keeps it without a
 * Set: most owners have one connection and most expiry seconds one token, and
 * even a one-element Set costs ~150 bytes. Values must not be Sets themselves.
 */
export class Multimap<K, V extends object> {
  readonly #map = new Map<K, V | Set<V>>()

  /** Number of keys. */
  get size (): number {
    return this.#map.size
  }

  has (key: K): boolean {
    return this.#map.has(key)
  }

  /** Adds `value` under `key`; returns false if it was there already. */
  add (key: K, value: V): boolean {
    const entry = this.#map.get(key)
    if (entry === undefined) {
      this.#map.set(key, value)
      return true
    }
    if (entry instanceof Set) {
      if (entry.has(value)) return false
      entry.add(value)
      return true
    }
    if (entry === value) return false
    this.#map.set(key, new Set([entry, value]))
    return true
  }

  /** Removes `value` from `key`; returns false if it was not there. A key left without values is removed. */
  delete (key: K, value: V): boolean {
    const entry = this.#map.get(key)
    if (entry === undefined) return false
    if (entry instanceof Set) {
      if (!entry.delete(value)) return false
      if (entry.size === 1) this.#map.set(key, entry.values().next().value as V)
      return true
    }
    if (entry !== value) return false
    this.#map.delete(key)
    return true
  }

  /** The values under `key` (none when absent). */
  get (key: K): Iterable<V> {
    const entry = this.#map.get(key)
    if (entry === undefined) return []
    return entry instanceof Set ? entry : [entry]
  }

  /** Removes `key` and returns its values. */
  take (key: K): V[] {
    const values = [...this.get(key)]
    this.#map.delete(key)
    return values
  }
}
