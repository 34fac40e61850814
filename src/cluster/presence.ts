import type { Redis } from 'ioredis'
import type { RedisConnection } from '../store/redis/connection.js'
import type { NodeLease } from './node-lease.js'

/**
 * Which client ids are connected to which node, cluster-wide: what the
 * relay asks ("is this device connected anywhere?", so a device connected to
 * another node gets the message over MQTT, not FCM/APNs), what CONNECT asks
 * (is this client id live under another owner? how many connections has this
 * user?), answered synchronously from a mirror every node keeps.
 *
 * Redis holds the truth: a hash client id → node, owner and connection,
 * written atomically at CONNECT by a script that refuses a client id live
 * under another owner on a node whose lease has not expired, so two nodes
 * racing for one client id give one winner. Every change is published; the
 * mirror applies them, and reloads the hash when its subscription
 * (re)starts, since messages sent while it was away are lost. The entries of
 * a node whose lease expired (killed, cut off) are removed by whichever node
 * notices first (node-lease.ts).
 */
export interface ClusterPresence {
  /**
   * Records a connection of `clientId` by `owner` on this node. Resolves
   * undefined when recorded (replacing a connection of the same owner:
   * takeover), or the owner whose live connection holds the client id.
   */
  register (clientId: string, owner: string, connection: string): Promise<string | undefined>
  /** Removes the record if it is still this connection's (a takeover may have replaced it). */
  unregister (clientId: string, connection: string): Promise<void>
  isConnected (clientId: string): boolean
  /** The node holding the client id's connection, as far as this node's mirror knows. */
  nodeOf (clientId: string): string | undefined
  ownerOf (clientId: string): string | undefined
  /** Every connection cluster-wide as this node's mirror knows it; only those of `owner` when given (the admin API). */
  list (owner?: string): PresenceEntry[]
  /** Connections of `owner` cluster-wide, not counting `clientId` (which a new connection replaces). */
  countForOwner (owner: string, clientId: string): number
  /**
   * Calls `handler` when this node's own records may have been lost: Redis
   * came back (possibly empty: its subscriber reconnected), or another node
   * removed them as a dead node's (its lease lapsed during an outage). The
   * handler registers the node's live connections again.
   */
  onRecordsLost (handler: () => void): void
  /** Removes a dead node's records (node-lease.ts calls it for every node whose lease expired). */
  removeNode (node: string): Promise<void>
  close (): Promise<void>
}

interface Entry { readonly node: string, readonly owner: string, readonly connection: string }

/** One connection of the cluster: its client id, the node holding it, and its owner key (auth/principal.ts ownerKey). */
export interface PresenceEntry { readonly clientId: string, readonly node: string, readonly owner: string }

const SEP = '\t'

// KEYS: presence hash, this node's set of client ids; ARGV: client id, node, owner, connection, key prefix, channel
const REGISTER = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local node, owner = string.match(current, '^([^\\t]*)\\t([^\\t]*)\\t')
  if owner ~= ARGV[3] and redis.call('EXISTS', ARGV[5] .. 'node:' .. node) == 1 then return owner end
  if node ~= ARGV[2] then redis.call('SREM', ARGV[5] .. 'presence:node:' .. node, ARGV[1]) end
end
local value = ARGV[2] .. '\\t' .. ARGV[3] .. '\\t' .. ARGV[4]
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[6], '+' .. ARGV[1] .. '\\t' .. value)
return false
`

// KEYS: presence hash, this node's set; ARGV: client id, node, connection, channel
const UNREGISTER = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local node, owner, connection = string.match(current, '^([^\\t]*)\\t([^\\t]*)\\t(.*)$')
if node ~= ARGV[2] or connection ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[4], '-' .. ARGV[1] .. '\\t' .. current)
return 1
`

// KEYS: presence hash, the dead node's set; ARGV: node, channel
const REMOVE_NODE = `
local ids = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(ids) do
  local current = redis.call('HGET', KEYS[1], id)
  if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '\\t' then redis.call('HDEL', KEYS[1], id) end
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[2], '!' .. ARGV[1])
return #ids
`

type PresenceCommands = Redis & {
  heraldPresenceRegister (hash: string, set: string, clientId: string, node: string, owner: string, connection: string, prefix: string, channel: string): Promise<string | null>
  heraldPresenceUnregister (hash: string, set: string, clientId: string, node: string, connection: string, channel: string): Promise<number>
  heraldPresenceRemoveNode (hash: string, set: string, node: string, channel: string): Promise<number>
}

export async function openClusterPresence (conn: RedisConnection, lease: NodeLease): Promise<ClusterPresence> {
  const client = conn.client as PresenceCommands
  client.defineCommand('heraldPresenceRegister', { numberOfKeys: 2, lua: REGISTER })
  client.defineCommand('heraldPresenceUnregister', { numberOfKeys: 2, lua: UNREGISTER })
  client.defineCommand('heraldPresenceRemoveNode', { numberOfKeys: 2, lua: REMOVE_NODE })
  const node = lease.node
  const channel = conn.channel('presence')
  const mirror = new PresenceMirror()

  async function reload (): Promise<void> {
    const all = await client.hgetall('presence')
    mirror.replace(Object.entries(all).flatMap(([clientId, value]) => {
      const entry = parseEntry(value)
      return entry === undefined ? [] : [[clientId, entry] as const]
    }))
  }

  const lost: Array<() => void> = []
  const recordsLost = (): void => { for (const handler of lost) handler() }
  const subscriber = conn.subscriber()
  subscriber.on('message', (_channel: string, message: string) => {
    mirror.apply(message)
    // another node found this one's lease lapsed and removed its records
    if (message === `!${node}`) recordsLost()
  })
  let subscribed = false
  // (re)subscribed: whatever was published meanwhile is lost, so read the whole hash again; Redis may have come back empty
  subscriber.on('ready', () => {
    if (!subscribed) return
    reload().then(recordsLost, () => {})
  })
  await subscriber.subscribe(channel)
  await reload()
  subscribed = true

  return {
    async register (clientId, owner, connection) {
      const holder = await client.heraldPresenceRegister('presence', `presence:node:${node}`, clientId, node, owner, connection, conn.keyPrefix, channel)
      if (holder !== null) return holder
      // our own change is in the mirror before CONNACK, not only once the message comes back
      mirror.set(clientId, { node, owner, connection })
      return undefined
    },
    async unregister (clientId, connection) {
      await client.heraldPresenceUnregister('presence', `presence:node:${node}`, clientId, node, connection, channel)
    },
    isConnected: (clientId) => mirror.get(clientId) !== undefined,
    nodeOf: (clientId) => mirror.get(clientId)?.node,
    ownerOf: (clientId) => mirror.get(clientId)?.owner,
    list: (owner) => mirror.list(owner),
    countForOwner: (owner, clientId) => mirror.countForOwner(owner, clientId),
    onRecordsLost: (handler) => { lost.push(handler) },
    async removeNode (dead) {
      await client.heraldPresenceRemoveNode('presence', `presence:node:${dead}`, dead, channel)
    },
    async close () {
      await subscriber.quit().catch(() => subscriber.disconnect())
    },
  }
}

function parseEntry (value: string): Entry | undefined {
  const [node, owner, ...rest] = value.split(SEP)
  if (node === undefined || owner === undefined || rest.length === 0) return undefined
  return { node, owner, connection: rest.join(SEP) }
}

/** The cluster's connections in memory, with a count per owner. */
class PresenceMirror {
  readonly #entries = new Map<string, Entry>()
  readonly #byOwner = new Map<string, Set<string>>()

  get (clientId: string): Entry | undefined {
    return this.#entries.get(clientId)
  }

  list (owner?: string): PresenceEntry[] {
    const ids = owner === undefined ? this.#entries.keys() : this.#byOwner.get(owner) ?? []
    const found: PresenceEntry[] = []
    for (const clientId of ids) {
      const entry = this.#entries.get(clientId)
      if (entry !== undefined) found.push({ clientId, node: entry.node, owner: entry.owner })
    }
    return found
  }

  countForOwner (owner: string, clientId: string): number {
    const ids = this.#byOwner.get(owner)
    if (ids === undefined) return 0
    return ids.size - (ids.has(clientId) ? 1 : 0)
  }

  set (clientId: string, entry: Entry): void {
    this.delete(clientId)
    this.#entries.set(clientId, entry)
    let ids = this.#byOwner.get(entry.owner)
    if (ids === undefined) this.#byOwner.set(entry.owner, ids = new Set())
    ids.add(clientId)
  }

  delete (clientId: string, connection?: string): void {
    const entry = this.#entries.get(clientId)
    if (entry === undefined || (connection !== undefined && entry.connection !== connection)) return
    this.#entries.delete(clientId)
    const ids = this.#byOwner.get(entry.owner)
    ids?.delete(clientId)
    if (ids?.size === 0) this.#byOwner.delete(entry.owner)
  }

  replace (entries: ReadonlyArray<readonly [string, Entry]>): void {
    this.#entries.clear()
    this.#byOwner.clear()
    for (const [clientId, entry] of entries) this.set(clientId, entry)
  }

  /** `+id\tnode\towner\tconn`, `-id\tnode\towner\tconn`, `!node` */
  apply (message: string): void {
    const kind = message[0]
    const body = message.slice(1)
    if (kind === '!') {
      for (const [clientId, entry] of this.#entries) if (entry.node === body) this.delete(clientId)
      return
    }
    const cut = body.indexOf(SEP)
    const entry = parseEntry(body.slice(cut + 1))
    if (cut < 0 || entry === undefined) return
    const clientId = body.slice(0, cut)
    if (kind === '+') this.set(clientId, entry)
    else if (kind === '-') this.delete(clientId, entry.connection)
  }
}
