import type { Principal } from '../auth/index.js'
import type { PrincipalAcl } from '../acl/index.js'

/** What Herald knows about one authenticated MQTT connection. */
export interface Session {
  readonly clientId: string
  readonly principal: Principal
  readonly owner: string
  readonly acl: PrincipalAcl
}

/**
 * Live authenticated connections, keyed by the connection object aedes hands
 * to every hook. Counts connections per owner for `limits.maxConnectionsPerUser`
 * and knows the owner of each connected client id.
 */
export class ConnectionRegistry<C extends object> {
  readonly #sessions = new WeakMap<C, Session>()
  readonly #latestById = new Map<string, C>()
  readonly #byOwner = new Map<string, Set<C>>()

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
    for (const connection of this.#byOwner.get(owner) ?? []) {
      if (this.#sessions.get(connection)?.clientId !== clientId) count++
    }
    return count
  }

  get size (): number {
    let count = 0
    for (const set of this.#byOwner.values()) count += set.size
    return count
  }

  add (connection: C, session: Session): void {
    this.#sessions.set(connection, session)
    this.#latestById.set(session.clientId, connection)
    let set = this.#byOwner.get(session.owner)
    if (set === undefined) this.#byOwner.set(session.owner, set = new Set())
    set.add(connection)
  }

  remove (connection: C): void {
    const session = this.#sessions.get(connection)
    if (session === undefined) return
    this.#sessions.delete(connection)
    if (this.#latestById.get(session.clientId) === connection) this.#latestById.delete(session.clientId)
    const set = this.#byOwner.get(session.owner)
    set?.delete(connection)
    if (set?.size === 0) this.#byOwner.delete(session.owner)
  }
}
