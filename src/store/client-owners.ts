import { groupCommitTarget } from './batch-target.js'
import { GroupCommit } from './group-commit.js'
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
  get (clientId: string): ClientIdClaim | undefined
  set (clientId: string, claim: ClientIdClaim): Promise<void>
  delete (clientId: string): Promise<void>
  /** Every claim (session expiry looks for persistent sessions that are only a claim). */
  entries (): IterableIterator<[string, ClientIdClaim]>
}

/**
 * Claims live in LevelDB and, all of them, in memory: every CONNECT asks for
 * its client id's claim, and a LevelDB read per CONNECT was what a connect
 * storm waited on. There is one claim per persistent session, which the
 * session store already keeps in memory too (its subscription trie).
 * Writes go to LevelDB first, then to memory; the writes of a connect storm
 * share batches (group commit).
 */
export async function openClientOwnerStore (db: Database): Promise<ClientOwnerStore> {
  const stored = db.sublevel<string, ClientIdClaim>('client-owners', { valueEncoding: 'json' })
  const claims = new Map<string, ClientIdClaim>()
  for await (const [clientId, claim] of stored.iterator()) claims.set(clientId, claim)
  const commit = new GroupCommit(groupCommitTarget(db))
  const key = (clientId: string): string => stored.prefixKey(clientId, 'utf8')
  return {
    get: (clientId) => claims.get(clientId),
    set: async (clientId, claim) => {
      // the bytes the sublevel's json encoding would write
      await commit.write([{ type: 'put', key: key(clientId), value: Buffer.from(JSON.stringify(claim)) }])
      claims.set(clientId, claim)
    },
    delete: async (clientId) => {
      await commit.write([{ type: 'del', key: key(clientId) }])
      claims.delete(clientId)
    },
    entries: () => claims.entries(),
  }
}
