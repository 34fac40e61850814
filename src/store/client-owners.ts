import { groupCommitTarget } from './batch-target.js'
import { GroupCommit } from './group-commit.js'
import { InstallationOwners } from './installation-owners.js'
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
  /** Synchronous, from memory: the CONNECT path asks for every client id. */
  get (clientId: string): ClientIdClaim | undefined
  /**
   * Claims the client id unless it is claimed already, and resolves with the
   * claim that holds it now: `claim`, or the one found (the caller compares
   * owners). Atomic: of concurrent claims of one id, exactly one is stored
   * (across nodes too, on Redis).
   */
  claim (clientId: string, claim: ClientIdClaim): Promise<ClientIdClaim>
  /** Sets the claim whatever holds the id (a new installation's id). */
  set (clientId: string, claim: ClientIdClaim): Promise<void>
  delete (clientId: string): Promise<void>
  /** Deletes the claim only if it is still `claim` (same owner and kind); resolves whether it did. */
  release (clientId: string, claim: ClientIdClaim): Promise<boolean>
  /** Every claim (session expiry looks for persistent sessions that are only a claim). */
  entries (): IterableIterator<[string, ClientIdClaim]>
  /** Synchronous, from memory: whether this owner key holds an installation's claim (whose principal the directory keeps). */
  ownsInstallation (owner: string): boolean
}

export const sameClaim = (a: ClientIdClaim | undefined, b: ClientIdClaim): boolean =>
  a !== undefined && a.owner === b.owner && a.installation === b.installation

/**
 * Claims live in LevelDB and, all of them, in memory: every CONNECT asks for
 * its client id's claim, and a LevelDB read per CONNECT was what a connect
 * storm waited on. There is one claim per persistent session, which the
 * session store already keeps in memory too (its subscription trie).
 * The writes of a connect storm share batches (group commit, `commit`: the
 * backend gives the one the known-principals directory writes through too),
 * which go to LevelDB in the order they were asked for.
 *
 * `claim` changes memory before its write, so a concurrent claim of the same
 * id finds it (one process: memory is where the race is decided), and takes
 * it back if the write fails. `set` and `delete` change memory once written,
 * unless memory changed meanwhile: that change was queued after theirs and
 * wins on disk as well.
 */
export async function openClientOwnerStore (db: Database, commit = new GroupCommit(groupCommitTarget(db))): Promise<ClientOwnerStore> {
  const stored = db.sublevel<string, ClientIdClaim>('client-owners', { valueEncoding: 'json' })
  const claims = new Map<string, ClientIdClaim>()
  for await (const [clientId, claim] of stored.iterator()) claims.set(clientId, claim)
  const installationOwners = new InstallationOwners()
  installationOwners.reset(claims.values())
  /** Every change of `claims` goes through here, so that installationOwners follows it. */
  function hold (clientId: string, claim: ClientIdClaim | undefined): void {
    installationOwners.change(claims.get(clientId), claim)
    if (claim === undefined) claims.delete(clientId)
    else claims.set(clientId, claim)
  }
  const key = (clientId: string): string => stored.prefixKey(clientId, 'utf8')
  // the bytes the sublevel's json encoding would write
  const put = async (clientId: string, claim: ClientIdClaim): Promise<void> =>
    await commit.write([{ type: 'put', key: key(clientId), value: Buffer.from(JSON.stringify(claim)) }])

  async function remove (clientId: string): Promise<void> {
    const before = claims.get(clientId)
    await commit.write([{ type: 'del', key: key(clientId) }])
    if (claims.get(clientId) === before) hold(clientId, undefined)
  }

  return {
    get: (clientId) => claims.get(clientId),
    async claim (clientId, claim) {
      const held = claims.get(clientId)
      if (held !== undefined) return held
      hold(clientId, claim)
      try {
        await put(clientId, claim)
      } catch (err) {
        if (claims.get(clientId) === claim) hold(clientId, undefined)
        throw err
      }
      return claim
    },
    async set (clientId, claim) {
      const before = claims.get(clientId)
      await put(clientId, claim)
      if (claims.get(clientId) === before) hold(clientId, claim)
    },
    delete: remove,
    async release (clientId, claim) {
      if (!sameClaim(claims.get(clientId), claim)) return false
      await remove(clientId)
      return true
    },
    entries: () => claims.entries(),
    ownsInstallation: (owner) => installationOwners.has(owner),
  }
}
