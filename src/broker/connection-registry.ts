import type { PrincipalAcl } from '../acl/index.js'
import { Multimap } from './multimap.js'

/** What Herald knows about one authenticated MQTT connection. */
export interface Session {
  readonly clientId: string
  /** The owner key of its principal (auth/principal.ts `ownerKey`). */
  readonly owner: string
  readonly acl: PrincipalAcl
  /** When its token stops being accepted, ms since the epoch; null if never. */
  readonly expiresAt: number | null
}

/** Hears of every connection as it is added to and removed from the registry. */
export interface RegistryListener {
  added (session: Session): void
  removed (session: Session): void
}

/**
 * Live authenticated connections, keyed by the connection object aedes hands
 * to every hook. Counts connections per owner for `limits.maxConnectionsPerUser`
 * and knows the owner of each connected client id.
 */
export class ConnectionRegistry<C extends object> {
  readonly #sessions = new WeakMap<C, Session>()
  /** when each connection joined, ms since the epoch (the admin API shows it) */
  readonly #since = new WeakMap<C, number>()
  readonly #latestById = new Map<string, C>()
  readonly #byOwner = new Multimap<string, C>()
  #size = 0
  readonly #listeners: RegistryListener[] = []

  /** Tells `listener` of every connection added or removed from now on (session expiry). */
  watch (listener: RegistryListener): void {
    this.#listeners.push(listener)
  }

  get (connection: C): Session | undefined {
    return this.#sessions.get(connection)
  }

  /** The session of the newest connection using `clientId`, if one is open. */
  byClientId (clientId: string): Session | undefined {
    const connection = this.#latestById.get(clientId)
    return connection === undefined ? undefined : this.#sessions.get(connection)
  }

  /** The newest open connection using `clientId`. */
  connectionByClientId (clientId: string): C | undefined {
    return this.#latestById.get(clientId)
  }

  /** Open connections of `owner`, not counting one that uses `clientId` (it is about to be taken over). */
  countForOwner (owner: string, clientId: string): number {
    let count = 0
    for (const connection of this.#byOwner.get(owner)) {
      if (this.#sessions.get(connection)?.clientId !== clientId) count++
    }
    return count
  }

  get size (): number {
    return this.#size
  }

  /** When the connection was added (authenticated), ms since the epoch. */
  connectedAt (connection: C): number | undefined {
    return this.#since.get(connection)
  }

  /** The newest open connection of each client id (of `owner` only, when given), with its session. */
  * connections (owner?: string): IterableIterator<[C, Session]> {
    const candidates = owner === undefined ? this.#latestById.values() : this.#byOwner.get(owner)
    for (const connection of candidates) {
      const session = this.#sessions.get(connection)
      if (session !== undefined && this.#latestById.get(session.clientId) === connection) yield [connection, session]
    }
  }

  add (connection: C, session: Session): void {
    this.remove(connection)
    this.#sessions.set(connection, session)
    this.#since.set(connection, Date.now())
    this.#latestById.set(session.clientId, connection)
    this.#byOwner.add(session.owner, connection)
    this.#size++
    for (const listener of this.#listeners) listener.added(session)
  }

  remove (connection: C): void {
    const session = this.#sessions.get(connection)
    if (session === undefined) return
    this.#sessions.delete(connection)
    if (this.#latestById.get(session.clientId) === connection) this.#latestById.delete(session.clientId)
    this.#byOwner.delete(session.owner, connection)
    this.#size--
    for (const listener of this.#listeners) listener.removed(session)
  }
}
