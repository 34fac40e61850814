import type { DeviceToken } from '../../plugins/push-core/types.js'
import { HeraldError } from '../errors/index.js'
import type { Database } from './open-store.js'
import { Serial } from './serial.js'

/**
 * A push token as stored: the relay's DeviceToken, defined once in push-core. Stored as the
 * device sent it; records written before `environment` could be null have one and keep it.
 */
export type PushToken = DeviceToken

/** A device: its id is its MQTT client id. */
export interface Installation {
  readonly id: string
  /** The owning user's id (`sub`). */
  readonly owner: string
  /** The owner's groups as last seen in the owner's token; used to check subscriptions made over HTTP. */
  readonly ownerGroups: readonly string[]
  /** False for push-only devices that never connect over MQTT. */
  readonly mqtt: boolean
  readonly pushToken: PushToken | null
  readonly createdAt: string
  readonly updatedAt: string
}

export interface InstallationStore {
  get (id: string): Promise<Installation | undefined>
  /** Several at once, in order (one LevelDB read): what the relay asks for every batch. */
  getMany (ids: readonly string[]): Promise<Array<Installation | undefined>>
  /** Synchronous, for the routing path: is this client id a push-only installation? */
  isPushOnly (id: string): boolean
  /** Synchronous, for the routing path: is this client id an installation with a push token? */
  hasPushToken (id: string): boolean
  /** Removes the push token the provider rejected, unless the installation has a new one by now. */
  prunePushToken (id: string, token: string): Promise<void>
  listByOwner (owner: string): Promise<Installation[]>
  /**
   * Stores a new or changed installation. A push token another installation holds moves to this one.
   * With `maxPerOwner`, a new installation whose owner has that many already is refused (TOO_MANY_INSTALLATIONS),
   * checked and stored in one step.
   */
  put (installation: Installation, options?: { readonly maxPerOwner?: number }): Promise<void>
  delete (id: string): Promise<Installation | undefined>
}

const SEPARATOR = '\u0000' // cannot occur in a user id (auth/claims.ts)

const ownerKey = (owner: string, id: string): string => `${owner}${SEPARATOR}${id}`
const tokenKey = (token: PushToken): string => `${token.provider}:${token.token}`

function openTables (db: Database) {
  return {
    byId: db.sublevel<string, Installation>('installations', { valueEncoding: 'json' }),
    byOwner: db.sublevel<string, string>('installations-by-owner', { valueEncoding: 'utf8' }),
    byToken: db.sublevel<string, string>('push-tokens', { valueEncoding: 'utf8' }),
  }
}

type Tables = ReturnType<typeof openTables>
type Batch = ReturnType<Database['batch']>

/** Refuses a new installation whose owner has `max` already. */
async function checkOwnerLimit ({ byOwner }: Tables, owner: string, max: number): Promise<void> {
  let owned = 0
  for await (const _ of byOwner.keys({ gte: ownerKey(owner, ''), lt: `${owner}\u0001`, limit: max })) owned++
  if (owned >= max) throw new HeraldError('TOO_MANY_INSTALLATIONS', `the user has ${owned} installations (limits.maxInstallationsPerUser): delete one before registering another`)
}

/** Adds the writes of storing `installation` over `previous` to the batch; resolves the id of the installation its push token was taken from. */
async function stagePut ({ byId, byOwner, byToken }: Tables, batch: Batch, installation: Installation, previous: Installation | undefined): Promise<string | undefined> {
  let displaced: string | undefined
  if (previous?.pushToken != null && (installation.pushToken === null || tokenKey(previous.pushToken) !== tokenKey(installation.pushToken))) {
    batch.del(tokenKey(previous.pushToken), { sublevel: byToken })
  }
  if (installation.pushToken !== null) {
    // a device that changed hands registers its token again: it leaves the old installation
    const holder = await byToken.get(tokenKey(installation.pushToken))
    if (holder !== undefined && holder !== installation.id) {
      const old = await byId.get(holder)
      if (old !== undefined) {
        batch.put(holder, { ...old, pushToken: null, updatedAt: installation.updatedAt }, { sublevel: byId })
        displaced = holder
      }
    }
    batch.put(tokenKey(installation.pushToken), installation.id, { sublevel: byToken })
  }
  if (previous !== undefined && previous.owner !== installation.owner) batch.del(ownerKey(previous.owner, previous.id), { sublevel: byOwner })
  batch.put(ownerKey(installation.owner, installation.id), installation.id, { sublevel: byOwner })
  batch.put(installation.id, installation, { sublevel: byId })
  return displaced
}

export async function openInstallationStore (db: Database): Promise<InstallationStore> {
  const tables = openTables(db)
  const { byId, byOwner, byToken } = tables
  // what the routing path asks for every message, kept in memory
  const pushOnly = new Set<string>()
  const withToken = new Set<string>()
  const remember = (installation: Installation): void => {
    if (installation.mqtt) pushOnly.delete(installation.id)
    else pushOnly.add(installation.id)
    if (installation.pushToken === null) withToken.delete(installation.id)
    else withToken.add(installation.id)
  }
  const forget = (id: string): void => {
    pushOnly.delete(id)
    withToken.delete(id)
  }
  for await (const installation of byId.values()) remember(installation)
  const serial = new Serial()

  return {
    get: async (id) => await byId.get(id),
    getMany: async (ids) => ids.length === 0 ? [] : await byId.getMany([...ids]),
    isPushOnly: (id) => pushOnly.has(id),
    hasPushToken: (id) => withToken.has(id),

    async listByOwner (owner) {
      const ids: string[] = []
      for await (const id of byOwner.values({ gte: ownerKey(owner, ''), lt: `${owner}\u0001` })) ids.push(id)
      const found = await byId.getMany(ids)
      return found.filter((i): i is Installation => i !== undefined)
    },

    put: async (installation, options) => await serial.run(async () => {
      const previous = await byId.get(installation.id)
      const max = options?.maxPerOwner
      if (previous === undefined && max !== undefined) await checkOwnerLimit(tables, installation.owner, max)
      const batch = db.batch()
      const displaced = await stagePut(tables, batch, installation, previous)
      await batch.write()
      if (displaced !== undefined) withToken.delete(displaced)
      remember(installation)
    }),

    prunePushToken: async (id, token) => await serial.run(async () => {
      const installation = await byId.get(id)
      if (installation?.pushToken?.token !== token) return
      const batch = db.batch()
      batch.del(tokenKey(installation.pushToken), { sublevel: byToken })
      const pruned = { ...installation, pushToken: null, updatedAt: new Date().toISOString() }
      batch.put(id, pruned, { sublevel: byId })
      await batch.write()
      remember(pruned)
    }),

    delete: async (id) => await serial.run(async () => {
      const installation = await byId.get(id)
      if (installation === undefined) return undefined
      const batch = db.batch()
      batch.del(id, { sublevel: byId })
      batch.del(ownerKey(installation.owner, id), { sublevel: byOwner })
      if (installation.pushToken !== null) batch.del(tokenKey(installation.pushToken), { sublevel: byToken })
      await batch.write()
      forget(id)
      return installation
    }),
  }
}
