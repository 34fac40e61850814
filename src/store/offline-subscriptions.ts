import QlobberSub from 'qlobber/aedes/qlobber-sub.js'
import type { StoredSubscription } from 'aedes-persistence-level/asyncPersistence.js'

/**
 * The persistent subscriptions that queue messages for offline sessions (those
 * granted QoS 1 or 2), matched by topic: what aedes asks the session store
 * for each QoS > 0 message (`subscriptionsByTopic`).
 *
 * aedes-persistence-level 9 keeps its own trie, but adding a subscription
 * there first removes every subscription of the same client whose filter
 * matches the new filter's text (asyncPersistence.js `addSubToTrie`): after
 * `a/#` at QoS 1, a SUBSCRIBE to `a/b` at QoS 0 took `a/#` out, and the
 * session stopped queueing anything under `a/`. Here each (client, filter) is
 * its own entry, and a match gives one entry per client, at the highest QoS of
 * its filters that match ([MQTT-3.3.5-1]): one queue entry per client.
 */
export class OfflineSubscriptions {
  // the options aedes-persistence uses: `#` also matches the parent level ([MQTT-4.7.1-2])
  readonly #trie = new QlobberSub({ separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true })

  /** A subscription stored for the client; a QoS 0 one queues nothing (and replaces one of higher QoS). */
  add (clientId: string, filter: string, qos: number): void {
    if (qos > 0) this.#trie.add(filter, { clientId, topic: filter, qos })
    else this.#trie.remove(filter, { clientId, topic: filter })
  }

  remove (clientId: string, filter: string): void {
    this.#trie.remove(filter, { clientId, topic: filter })
  }

  /** One subscription per client whose filters match the topic, the one of highest QoS. */
  match (topic: string): StoredSubscription[] {
    const matches = this.#trie.match(topic)
    if (matches.length < 2) return matches.map((sub) => ({ clientId: sub.clientId, topic: sub.topic, qos: sub.qos }))
    const byClient = new Map<string, StoredSubscription>()
    for (const sub of matches) {
      const best = byClient.get(sub.clientId)
      if (best === undefined || sub.qos > best.qos) byClient.set(sub.clientId, { clientId: sub.clientId, topic: sub.topic, qos: sub.qos })
    }
    return [...byClient.values()]
  }
}
