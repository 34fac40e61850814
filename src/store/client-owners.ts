import type { Database } from './open-store.js'

/**
 * Which owner (see `ownerKey`) holds a persistent MQTT session under a client id.
 * Kept next to the session so a client id can never change hands across restarts.
 */
export interface ClientOwnerStore {
  get (clientId: string): Promise<string | undefined>
  set (clientId: string, owner: string): Promise<void>
  delete (clientId: string): Promise<void>
}

export function createClientOwnerStore (db: Database): ClientOwnerStore {
  const owners = db.sublevel<string, string>('client-owners', { valueEncoding: 'utf8' })
  return {
    get: async (clientId) => await owners.get(clientId),
    set: async (clientId, owner) => { await owners.put(clientId, owner) },
    delete: async (clientId) => { await owners.del(clientId) },
  }
}
