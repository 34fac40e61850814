import type { Logger } from 'pino'
import { userOwnerKey, type Grants, type Principal, type Role, type TokenVerifier } from '../auth/index.js'
import type { ClientOwnerStore } from './client-owners.js'
import { groupCommitTarget } from './batch-target.js'
import { GroupCommit } from './group-commit.js'
import type { Installation } from './installations.js'
import type { Database } from './open-store.js'
import { PrincipalUpdates } from './principal-updates.js'

/**
 * The newest principal Herald knows of each user: what the relay checks a
 * message against for an offline device, and what a service subscribing a
 * user's installation is checked against. MQTT delivery checks the ACL of the
 * connection's own token; a device that is offline has no connection, so the
 * next best is the user's newest token seen anywhere, over MQTT or HTTP.
 * Without it, a user who left a group kept getting its messages through
 * FCM/APNs on a device that subscribed while a member (issue 14, item 7).
 */
export interface PrincipalDirectory {
  /**
   * A token Herald accepted (an MQTT CONNECT or an HTTP call). It becomes the
   * user's known principal unless one issued later is known already, or the
   * directory does not keep this user (`KeepsPrincipal`).
   * Synchronous: the write to LevelDB happens behind it; `latest` waits for it.
   */
  seen (principal: Principal): void
  /** The newest known principal of each user id, in order; undefined for a user never seen. */
  latest (subs: readonly string[]): Promise<Array<Principal | undefined>>
  /** The verifier, recording every principal it returns: MQTT CONNECT and HTTP both verify through it. */
  watch (verifier: TokenVerifier): TokenVerifier
  /** Every write asked for so far is done (tests, shutdown). */
  idle (): Promise<void>
}

/** What is stored per user: the token's rights, and when the token was issued. */
export interface KnownRecord {
  readonly groups: readonly string[]
  readonly role: Role
  readonly grants: Grants
  /** ms since the epoch: the token's `iat`, or when it was seen for a token without one. */
  readonly issuedAt: number
}

export interface Cached {
  record: KnownRecord
  /** False until LevelDB has it; such an entry is written again the next time the user is seen. */
  persisted: boolean
}

/**
 * Users whose record stays in memory (least recently seen leaves first). Every
 * CONNECT and HTTP call asks for its user's; a miss costs one LevelDB read (none for a user never stored).
 */
export const CACHE_SIZE = 10_000

/**
 * Whose principal the directory keeps; a principal of anyone else is not
 * recorded. The backends keep the owners of installations only: nothing reads
 * anyone else's (the relay and the subscriptions route ask about
 * installations' owners), and a storm of devices without an installation then
 * writes nothing but their client-id claims (issue 17). Default: everyone.
 */
export type KeepsPrincipal = (sub: string) => boolean

/** The principals of users who own an installation, as the client-id claims tell. */
export const keepsInstallationOwners = (claims: Pick<ClientOwnerStore, 'ownsInstallation'>): KeepsPrincipal =>
  (sub) => claims.ownsInstallation(userOwnerKey(sub))

export interface DirectoryOptions {
  /** the group commit the writes go through: the backend gives the one client-id claims use, so a CONNECT's claim and principal go in one batch */
  readonly commit?: GroupCommit
  readonly keeps?: KeepsPrincipal
}

/**
 * "Newest" is by issue time (`iat`), not by arrival: a stale token still in
 * use on a second device must not bring back a group its user left in a token
 * issued since. A token without `iat` counts as issued when it is seen.
 */
export async function openPrincipalDirectory (db: Database, logger: Logger, options: DirectoryOptions = {}): Promise<PrincipalDirectory> {
  const { commit = new GroupCommit(groupCommitTarget(db)), keeps = () => true } = options
  const stored = db.sublevel<string, KnownRecord>('known-principals', { valueEncoding: 'json' })
  const cache = new Map<string, Cached>()
  const updates = new PrincipalUpdates(logger)
  const remember = (sub: string, entry: Cached): void => rememberRecent(cache, sub, entry)
  // Which users LevelDB has a record of (ids only, the records stay on disk): a user seen for the first
  // time, every CONNECT of a storm of new devices, costs no read. The writes share batches (group commit).
  const storedSubs = new Set<string>()
  for await (const sub of stored.keys()) storedSubs.add(sub)
  const read = async (sub: string): Promise<KnownRecord | undefined> => storedSubs.has(sub) ? await stored.get(sub) : undefined
  async function write (sub: string, record: KnownRecord): Promise<void> {
    // the bytes the sublevel's json encoding would write
    await commit.write([{ type: 'put', key: stored.prefixKey(sub, 'utf8'), value: Buffer.from(JSON.stringify(record)) }])
    storedSubs.add(sub)
  }

  /** The update step, one at a time per user: read what is known (cache or LevelDB), write when newer. */
  async function update (sub: string, candidate: KnownRecord, hasIat: boolean): Promise<void> {
    const cached = cache.get(sub)
    const known = cached?.record ?? await read(sub)
    const newer = known === undefined || supersedes(candidate, hasIat, known)
    if (!newer && cached?.persisted !== false) {
      // known, and in LevelDB already
      if (cached === undefined) remember(sub, { record: known, persisted: true })
      return
    }
    await persist(sub, { record: newer ? candidate : known, persisted: false })
  }

  /** In memory first (the relay decides by it from now on, even if the disk cannot take it), then in LevelDB. */
  async function persist (sub: string, entry: Cached): Promise<void> {
    remember(sub, entry)
    await write(sub, entry.record)
    entry.persisted = true
  }

  function seen (principal: Principal): void {
    const offered = candidateOf(principal, keeps)
    if (offered === undefined) return
    const { sub, candidate, hasIat } = offered
    const cached = cache.get(sub)
    // the path of nearly every call: nothing new about this user
    if (cached !== undefined && cached.persisted && !updates.has(sub) && !supersedes(candidate, hasIat, cached.record)) {
      remember(sub, cached)
      return
    }
    if (cached === undefined && !storedSubs.has(sub) && !updates.has(sub)) {
      // a user never seen: nothing to read or compare, this token is the newest known
      updates.run(sub, async () => await persist(sub, { record: candidate, persisted: false }))
      return
    }
    updates.run(sub, async () => await update(sub, candidate, hasIat))
  }

  return {
    seen,

    async latest (subs) {
      await updates.settled(subs)
      const misses = subs.filter((sub) => !cache.has(sub) && storedSubs.has(sub))
      const records = misses.length === 0 ? [] : await stored.getMany(misses)
      const found = new Map<string, KnownRecord | undefined>(misses.map((sub, i) => [sub, records[i]]))
      for (const [sub, record] of found) {
        // unless an update started meanwhile: it knows better
        if (record !== undefined && !cache.has(sub) && !updates.has(sub)) remember(sub, { record, persisted: true })
      }
      return subs.map((sub) => {
        const record = cache.get(sub)?.record ?? found.get(sub)
        return record === undefined ? undefined : principalOf(sub, record)
      })
    },

    watch: (verifier) => recordingVerifier(verifier, seen),

    idle: async () => await updates.idle(),
  }
}

/** What a principal would be stored as: undefined for anything but a user the directory keeps. */
export function candidateOf (principal: Principal, keeps: KeepsPrincipal): { sub: string, candidate: KnownRecord, hasIat: boolean } | undefined {
  if (principal.kind !== 'user' || principal.sub === null || !keeps(principal.sub)) return undefined
  const candidate: KnownRecord = { groups: principal.groups, role: principal.role, grants: principal.grants, issuedAt: principal.issuedAt ?? Date.now() }
  return { sub: principal.sub, candidate, hasIat: principal.issuedAt !== undefined }
}

/**
 * Does a newly seen token replace what is known? When it was issued no
 * earlier and says something else, or the same with a later `iat` (so that
 * an older token seen after it cannot win). A token without `iat` saying the
 * same thing changes nothing: no write per call.
 */
export function supersedes (candidate: KnownRecord, hasIat: boolean, known: KnownRecord): boolean {
  if (candidate.issuedAt < known.issuedAt) return false
  if (!sameRights(candidate, known)) return true
  return hasIat && candidate.issuedAt > known.issuedAt
}

function sameRights (a: KnownRecord, b: KnownRecord): boolean {
  return a.role === b.role && sameList(a.groups, b.groups) && sameList(a.grants.pub, b.grants.pub) && sameList(a.grants.sub, b.grants.sub)
}

function sameList (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i])
}

export function principalOf (sub: string, record: KnownRecord): Principal {
  return { kind: 'user', sub, groups: record.groups, role: record.role, grants: record.grants, expiresAt: null, issuedAt: record.issuedAt }
}

/**
 * Who an installation's owner is, for a decision taken without the owner's
 * token: the newest principal known, else what the installation recorded
 * (its owner's groups at registration, no grants: installations registered
 * before principals were recorded, or by a service for a user never seen).
 */
export function installationOwner (installation: Installation, known: Principal | undefined): Principal {
  return known ?? { kind: 'user', sub: installation.owner, groups: installation.ownerGroups, role: 'device', grants: { pub: [], sub: [] }, expiresAt: null }
}

/** Keeps `entry` as the user's most recently seen; the least recently seen user leaves past CACHE_SIZE. */
export function rememberRecent (cache: Map<string, Cached>, sub: string, entry: Cached): void {
  cache.delete(sub)
  cache.set(sub, entry)
  if (cache.size > CACHE_SIZE) {
    const oldest = cache.keys().next().value
    if (oldest !== undefined) cache.delete(oldest)
  }
}

/** The verifier, passing every principal it returns to `seen`. */
export function recordingVerifier (verifier: TokenVerifier, seen: (principal: Principal) => void): TokenVerifier {
  return {
    verify (token) {
      const principal = verifier.verify(token)
      seen(principal)
      return principal
    },
  }
}
