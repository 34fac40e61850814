import { groupCommitTarget } from './batch-target.js'
import { GroupCommit } from './group-commit.js'
import type { Database } from './open-store.js'

/**
 * Where session expiry keeps when each client id was last seen
 * (`limits.sessionExpirySec`): LevelDB for one process, Redis for a cluster
 * (redis/session-activity.ts), where any node may see a client disconnect
 * and any node may sweep.
 */
export interface SessionActivityStore {
  /** Every client id's last-seen time, ms since the epoch, as stored now. */
  loadAll (): Promise<Map<string, number>>
  /** One client id's, as stored now (a cluster: another node may have written it since loadAll). */
  get (clientId: string): Promise<number | undefined>
  put (clientId: string, at: number): Promise<void>
  delete (clientId: string): Promise<void>
  /**
   * Runs a sweep unless another is running: a cluster sweeps on one node at a
   * time (the others skip that round); one process always runs it.
   */
  exclusive<T> (sweepMs: number, run: () => Promise<T>): Promise<T | undefined>
  /** True when other processes write it too: a sweep reads everything again first, and each deletion re-reads its client id. */
  readonly shared: boolean
}

/** In the process's LevelDB (`session-activity`); its writes share batches, so a disconnect storm is a few writes. */
export function levelSessionActivity (db: Database): SessionActivityStore {
  const stored = db.sublevel<string, number>('session-activity', { valueEncoding: 'json' })
  const commit = new GroupCommit(groupCommitTarget(db))
  const key = (clientId: string): string => stored.prefixKey(clientId, 'utf8')
  return {
    shared: false,
    async loadAll () {
      const all = new Map<string, number>()
      for await (const [clientId, at] of stored.iterator()) all.set(clientId, at)
      return all
    },
    get: async (clientId) => await stored.get(clientId),
    // the bytes the sublevel's json encoding would write
    put: async (clientId, at) => { await commit.write([{ type: 'put', key: key(clientId), value: Buffer.from(JSON.stringify(at)) }]) },
    delete: async (clientId) => { await commit.write([{ type: 'del', key: key(clientId) }]) },
    exclusive: async (_sweepMs, run) => await run(),
  }
}
