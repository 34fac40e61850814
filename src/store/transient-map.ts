/**
 * A Map for entries that come and go with each message (a QoS 1 message
 * between its PUBLISH and its PUBACK), kept by an object that lives as long
 * as the broker.
 *
 * When a delete leaves a Map (nearly) empty, V8 shrinks its hash table by
 * allocating a new one, and once the Map has moved to the old generation it
 * allocates that table there. A broker-lifetime Map going from one entry to
 * none for every message so left a dead table in old space per message: only
 * a full collection frees those, and until then the young objects they point
 * to survive the scavenges. In the latency bench (one message in flight at a
 * time) Herald's heap grew by about 0.5 MB a second, and its median scavenge
 * took 1.40 ms against 1.14 without this garbage. Here the delete of the last
 * entry replaces the Map with a new one, which is young, instead of shrinking
 * it.
 *
 * An iteration goes over the Map of its start: entries set after the last
 * one was deleted during it are not visited.
 */
export class TransientMap<K, V> {
  #map = new Map<K, V>()

  get size (): number {
    return this.#map.size
  }

  get (key: K): V | undefined {
    return this.#map.get(key)
  }

  has (key: K): boolean {
    return this.#map.has(key)
  }

  set (key: K, value: V): this {
    this.#map.set(key, value)
    return this
  }

  delete (key: K): boolean {
    if (this.#map.size !== 1) return this.#map.delete(key)
    if (!this.#map.has(key)) return false
    this.#map = new Map()
    return true
  }

  values (): IterableIterator<V> {
    return this.#map.values()
  }

  [Symbol.iterator] (): IterableIterator<[K, V]> {
    return this.#map[Symbol.iterator]()
  }
}
