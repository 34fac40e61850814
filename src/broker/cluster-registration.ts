import type { Client } from 'aedes'
import type { Logger } from 'pino'
import type { ClusterPresence } from '../cluster/presence.js'

/**
 * This node's connections in the cluster's presence (cluster/presence.ts):
 * each with its name there, so its close never removes a newer connection's
 * record (a takeover by another node), and its owner, to write it again when
 * the records were lost.
 */
export class ClusterRegistration {
  readonly #presence: ClusterPresence
  readonly #logger: Logger
  readonly #nodeId: () => string
  readonly #records = new Map<Client, { readonly id: string, readonly owner: string }>()
  #connections = 0

  /** `nodeId`: the broker id, read when a connection registers (aedes' id is set after the hooks). */
  constructor (presence: ClusterPresence, logger: Logger, nodeId: () => string) {
    this.#presence = presence
    this.#logger = logger
    this.#nodeId = nodeId
    presence.onRecordsLost(() => { this.#reassert() })
  }

  /** Records the connection; resolves the holder's owner when another owner's live connection holds the client id. */
  async register (client: Client, owner: string): Promise<string | undefined> {
    const id = `${this.#nodeId()}:${++this.#connections}`
    const holder = await this.#presence.register(client.id, owner, id)
    if (holder === undefined) this.#records.set(client, { id, owner })
    return holder
  }

  /** The connection closed: its record goes, unless a newer connection's replaced it. Nobody waits for it. */
  unregister (client: Client): void {
    const record = this.#records.get(client)
    if (record === undefined) return
    this.#records.delete(client)
    this.#presence.unregister(client.id, record.id).catch((err: unknown) => this.#logger.warn({ err, clientId: client.id }, 'removing a closed connection from the cluster presence failed; it goes when this node stops'))
  }

  /**
   * Writes every connection of this node into the presence again: Redis came
   * back empty, or another node took this one for dead and removed them.
   * Otherwise the others would count these devices as offline (and the relay
   * push to them through FCM/APNs) until they reconnect. A client id another
   * owner took meanwhile is closed here: it is that owner's now.
   */
  #reassert (): void {
    if (this.#records.size === 0) return
    this.#logger.info({ connections: this.#records.size }, 'writing this node\'s connections into the cluster presence again')
    for (const [client, { id, owner }] of this.#records) {
      this.#presence.register(client.id, owner, id).then((holder) => {
        if (holder === undefined || client.closed) return
        this.#logger.info({ clientId: client.id }, 'the client id was taken by another owner while the presence was lost; closing the connection')
        client.close()
      }, (err: unknown) => this.#logger.warn({ err, clientId: client.id }, 'writing a connection into the cluster presence again failed'))
    }
  }
}
