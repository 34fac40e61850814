import type { Logger } from 'pino'
import type { ClientOwnerStore } from './client-owners.js'
import { Serial } from './serial.js'
import type { SessionActivityStore } from './session-activity.js'
import type { SessionStorage } from './session-storage.js'

/** What session expiry needs of the session store (LevelDB or Redis). */
export type ExpirableSessions = Pick<SessionStorage, 'sessionState' | 'sessionClientIds' | 'deleteSession' | 'deleteQueue'>

export interface SessionExpiryOptions {
  /** `limits.sessionExpirySec`, above 0 */
  readonly expirySec: number
  /** `limits.sessionExpirySweepSec` */
  readonly sweepSec: number
  readonly sessions: ExpirableSessions
  readonly owners: ClientOwnerStore
  readonly isConnected: (clientId: string) => boolean
  readonly logger: Logger
  /** the clock; tests move it */
  readonly now?: () => number
  /** a session deleted (`session`), or an installation's queue (`queue`) */
  readonly onExpired?: (kind: 'session' | 'queue') => void
}

export interface SessionExpiry {
  /** An MQTT connection of this client id was accepted. */
  connected (clientId: string): void
  /** An MQTT connection of this client id closed. */
  disconnected (clientId: string): void
  /** Deletes what expired now; resolves with how many client ids expired. */
  sweep (): Promise<number>
  /** Sweeps now, then every `sweepSec`. */
  start (): Promise<void>
  /** Stops the timer; waits for a running sweep and the writes asked for. */
  close (): Promise<void>
}

/**
 * When each client id was last seen, in memory and in the activity store
 * (session-activity.ts). The writes nobody waits for are tracked so close()
 * can wait for them.
 */
class Activity {
  /** client id → when it was last seen, ms since the epoch */
  readonly lastSeen = new Map<string, number>()
  private readonly writes = new Set<Promise<void>>()

  constructor (readonly store: SessionActivityStore, private readonly logger: Logger) {}

  /** Reads every record: at start, and before each sweep of a cluster, whose other nodes write too. */
  async load (): Promise<void> {
    const all = await this.store.loadAll()
    this.lastSeen.clear()
    for (const [clientId, at] of all) this.lastSeen.set(clientId, at)
  }

  /** The client id's record as stored now, kept in memory too (a cluster: another node may have seen it since). */
  async refresh (clientId: string): Promise<number | undefined> {
    if (!this.store.shared) return this.lastSeen.get(clientId)
    const at = await this.store.get(clientId)
    if (at === undefined) this.lastSeen.delete(clientId)
    else this.lastSeen.set(clientId, at)
    return at
  }

  seen (clientId: string, at: number): void {
    this.lastSeen.set(clientId, at)
    this.behind(this.store.put(clientId, at))
  }

  forget (clientId: string): void {
    if (!this.lastSeen.delete(clientId)) return
    this.behind(this.store.delete(clientId))
  }

  /** Resolves once the writes asked for so far are done. */
  async settled (): Promise<void> {
    await Promise.all([...this.writes])
  }

  private behind (write: Promise<void>): void {
    const tracked = write.catch((err: unknown) => this.logger.error({ err }, 'writing when a session was last used failed'))
    this.writes.add(tracked)
    void tracked.finally(() => this.writes.delete(tracked))
  }
}

/** Client ids whose stored state expires: sessions that are not installations, and installations' queues and wills. */
async function expirable ({ sessions, owners }: SessionExpiryOptions): Promise<Set<string>> {
  const ids = new Set<string>()
  for (const [clientId, claim] of owners.entries()) if (!claim.installation) ids.add(clientId)
  for (const clientId of await sessions.sessionClientIds()) {
    if (owners.get(clientId)?.installation !== true) {
      ids.add(clientId)
      continue
    }
    const state = await sessions.sessionState(clientId)
    if (state.queue || state.will) ids.add(clientId)
  }
  return ids
}

async function expire ({ sessions, owners, isConnected, expirySec }: SessionExpiryOptions, activity: Activity, now: () => number, clientId: string): Promise<'session' | 'queue' | undefined> {
  if (isConnected(clientId)) return undefined
  // used since the sweep listed it (it connected and left while earlier sessions were deleted; or, in a cluster, on another node)
  const last = await activity.refresh(clientId)
  if (last !== undefined && now() - last < expirySec * 1000) return undefined
  const claim = owners.get(clientId)
  if (claim?.installation === true) {
    await sessions.deleteQueue(clientId)
    activity.forget(clientId)
    return 'queue'
  }
  await sessions.deleteSession(clientId)
  // it connected again while its session was deleted: it keeps its id
  if (isConnected(clientId)) {
    activity.seen(clientId, now())
    return 'session'
  }
  // only the claim it saw: a claim made since (another node, another owner) stays
  if (claim !== undefined) await owners.release(clientId, claim)
  activity.forget(clientId)
  return 'session'
}

/**
 * Of the expirable client ids, those unused for `expiryMs` at `at`. On the
 * way, a connected client's record is refreshed once half the expiry has
 * passed, a client id never seen counts from now, and the records of client
 * ids deleted some other way are forgotten.
 */
function dueAt (ids: ReadonlySet<string>, activity: Activity, isConnected: (clientId: string) => boolean, at: number, expiryMs: number): string[] {
  const { lastSeen } = activity
  const due: string[] = []
  for (const clientId of ids) {
    const last = lastSeen.get(clientId)
    if (isConnected(clientId)) {
      if (last === undefined || at - last > expiryMs / 2) activity.seen(clientId, at)
    } else if (last === undefined) {
      activity.seen(clientId, at)
    } else if (at - last >= expiryMs) {
      due.push(clientId)
    }
  }
  // deleted some other way (clean session, installation deleted, HTTP)
  for (const clientId of [...lastSeen.keys()]) if (!ids.has(clientId) && !isConnected(clientId)) activity.forget(clientId)
  return due
}

/** Expires the due client ids one after the other (each checked again first); resolves with how many expired. */
async function expireAll (options: SessionExpiryOptions, activity: Activity, now: () => number, due: readonly string[]): Promise<number> {
  const { logger } = options
  const counts = { session: 0, queue: 0 }
  for (const clientId of due) {
    const kind = await expire(options, activity, now, clientId)
    if (kind === undefined) continue
    counts[kind]++
    options.onExpired?.(kind)
    logger.debug({ clientId, kind }, 'session expired')
  }
  if (due.length > 0) logger.info({ sessions: counts.session, installationQueues: counts.queue, expirySec: options.expirySec }, 'expired sessions unused for limits.sessionExpirySec deleted')
  return counts.session + counts.queue
}

/**
 * `limits.sessionExpirySec`: a persistent session nobody used for that long is
 * deleted, as Mosquitto's `persistent_client_expiration` does. Without it,
 * every client id that ever connected with clean=false kept its
 * subscriptions, its claim and a copy of every message on its topics, for
 * ever: one token made 1,583 such sessions, and each message on their topic
 * was then queued 1,583 times.
 *
 * "Used" is an MQTT connection: the time a client id was last seen
 * disconnecting is kept in LevelDB (`session-activity`), and refreshed while
 * it stays connected (at CONNECT and at each sweep, once half the expiry has
 * passed), so a crash while it was connected never makes it look older than
 * it is by more than half the expiry. A session nobody has seen yet (made
 * over HTTP, or stored before this existed) counts from the first sweep that
 * finds it.
 *
 * What expires:
 * - a client id that is not an installation: its subscriptions, queued and
 *   in-flight messages, will, and its claim (another user may take the id);
 * - an installation: its queued and in-flight messages and its will only.
 *   Its subscriptions (the inbox, topics subscribed over HTTP) are part of the
 *   installation, what the relay routes FCM/APNs pushes by, and stay as long
 *   as it exists; so does its claim. Deleting the installation (HTTP) deletes
 *   the rest.
 */
export async function openSessionExpiry (store: SessionActivityStore, options: SessionExpiryOptions): Promise<SessionExpiry> {
  const { sessions, owners, isConnected, logger } = options
  const now = options.now ?? Date.now
  const expiryMs = options.expirySec * 1000
  const activity = new Activity(store, logger)
  await activity.load()
  const { lastSeen } = activity
  const seen = (clientId: string, at: number): void => { activity.seen(clientId, at) }
  const serial = new Serial()
  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> = Promise.resolve()
  /** disconnects whose session state is being asked for: a sweep waits for them, so it sees the client as used */
  const lookups = new Set<Promise<void>>()

  async function sweep (): Promise<number> {
    await Promise.all([...lookups])
    return await serial.run(async () => await sweepOnce() ?? 0)
  }

  /** One sweep, unless another node of the cluster is sweeping (undefined). */
  async function sweepOnce (): Promise<number | undefined> {
    return await store.exclusive(options.sweepSec * 1000, async () => {
      // other nodes saw clients since this one read the records
      if (store.shared) await activity.load()
      const at = now()
      const due = dueAt(await expirable(options), activity, isConnected, at, expiryMs)
      return await expireAll(options, activity, now, due)
    })
  }

  function sweepOnTimer (): void {
    running = sweep().catch((err: unknown) => logger.error({ err }, 'session expiry sweep failed'))
  }

  return {
    connected (clientId) {
      const last = lastSeen.get(clientId)
      if (last !== undefined && now() - last > expiryMs / 2) seen(clientId, now())
    },
    disconnected (clientId) {
      if (lastSeen.has(clientId) || owners.get(clientId) !== undefined) {
        seen(clientId, now())
        return
      }
      // asked of the store (Redis: a round trip); a client with nothing stored is not tracked
      const lookup = sessions.sessionState(clientId).then(
        (state) => { if (state.subscriptions || state.will || state.queue) seen(clientId, now()) },
        (err: unknown) => logger.error({ err, clientId }, 'reading a disconnected session\'s state failed'))
      lookups.add(lookup)
      void lookup.finally(() => lookups.delete(lookup))
    },
    sweep,
    async start () {
      await sweep()
      // unref'd: a sweep never keeps the process alive
      timer = setInterval(sweepOnTimer, options.sweepSec * 1000).unref()
    },
    async close () {
      clearInterval(timer)
      timer = undefined
      await Promise.all([...lookups])
      await running
      await serial.run(async () => {})
      await activity.settled()
    },
  }
}
