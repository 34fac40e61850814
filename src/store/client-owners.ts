import type { Database } from './open-store.js'

/**
 * Which owner (see `ownerKey`) holds a client id. A persistent MQTT session
 * claims its client id for its owner until the owner connects with
 * clean=true; an installation claims its id (the installation id) until the
 * installation is deleted. Either way a client id never changes hands.
 */
export interface ClientIdClaim {
  readonly owner: string
  /** True for installations: only deleting the installation releases the id. */
  readonly installation: boolean
}

export interface ClientOwnerStore {
  get (clientId: string): Promise<ClientIdClaim | undefined>
  set (clientId: string, claim: ClientIdClaim): Promise<void>
  delete (clientId: string): Promise<void>
}

export function createClientOwnerStore (db: Database): ClientOwnerStore {
  const claims = db.sublevel<string, ClientIdClaim>('client-owners', { valueEncoding: 'json' })
  return {
    get: async (clientId) => await claims.get(clientId),
    set: async (clientId, claim) => { await claims.put(clientId, claim) },
    delete: async (clientId) => { await claims.del(clientId) },
  }
}
