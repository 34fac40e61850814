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

  const subscriber = conn.subscriber()
  /** Changes that arrive while the hash is read: applied, in order, over what was read. */
  let arrived: string[] | undefined

  async function reload (): Promise<void> {
    // the subscription is active before the hash is read, so no change after the read is missed: after a
    // reconnect ioredis subscribes again on its own, after its 'ready' event; this waits for that
    await subscriber.subscribe(channel)
    const during: string[] = []
    arrived = during
    try {
      const all = await client.hgetall('presence')
      mirror.replace(Object.entries(all).flatMap(([clientId, value]) => {
        const entry = parseEntry(value)
        return entry === undefined ? [] : [[clientId, entry] as const]
      }))
    } finally {
      if (arrived === during) arrived = undefined
    }
    // each change says what its client id (or node) now is: applied in order they end where Redis is
    for (const message of during) mirror.apply(message)
  }

  const lost: Array<() => void> = []
  const recordsLost = (): void => { for (const handler of lost) handler() }
  subscriber.on('message', (_channel: string, message: string) => {
    if (arrived !== undefined) arrived.push(message)
    else mirror.apply(message)
    // another node found this one's lease lapsed and removed its records
    if (message === `!${node}`) recordsLost()
  })
  let subscribed = false
  // (re)subscribed: whatever was published meanwhile is lost, so read the whole hash again; Redis may have come back empty
  subscriber.on('ready', () => {
    if (!subscribed) return
    reload().then(recordsLost, () => {})
  })
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

/** An owner's connections cluster-wide; every entry of that owner points to the one record (the owner's string is kept once). */
interface OwnerRecord { readonly owner: string, count: number }

/**
 * What the mirror keeps of a connection: its node and the first part of its
 * name (strings shared by every connection of that node), its owner's
 * record, and the number ending its name (`<broker id>:<n>`,
 * broker/cluster-registration.ts); -1 when the name is not of that form
 * (then `prefix` is the whole name).
 */
interface Slot { readonly node: string, readonly owner: OwnerRecord, readonly prefix: string, readonly n: number }

/**
 * The cluster's connections in memory, with a count per owner. Every node
 * keeps every connection of the cluster, so each costs every node: the
 * strings a change message brings are reduced to what differs per
 * connection (the client id; the node, the owner and the first part of the
 * connection's name are shared, the name's number is kept as a number),
 * about 0.2 kB a connection where an entry object, its strings and a set
 * per owner took 0.5 kB.
 */
class PresenceMirror {
  readonly #entries = new Map<string, Slot>()
  readonly #owners = new Map<string, OwnerRecord>()
  /** node names and connection name prefixes, each string kept once */
  readonly #shared = new Map<string, string>()

  get (clientId: string): Entry | undefined {
    const slot = this.#entries.get(clientId)
    return slot === undefined ? undefined : { node: slot.node, owner: slot.owner.owner, connection: connectionName(slot) }
  }

  list (owner?: string): PresenceEntry[] {
    const found: PresenceEntry[] = []
    // the whole mirror for one owner: the admin API, not a hot path
    for (const [clientId, slot] of this.#entries) {
      if (owner === undefined || slot.owner.owner === owner) found.push({ clientId, node: slot.node, owner: slot.owner.owner })
    }
    return found
  }

  countForOwner (owner: string, clientId: string): number {
    const record = this.#owners.get(owner)
    if (record === undefined) return 0
    return record.count - (this.#entries.get(clientId)?.owner === record ? 1 : 0)
  }

  set (clientId: string, entry: Entry): void {
    this.delete(clientId)
    const node = this.#share(entry.node)
    let owner = this.#owners.get(entry.owner)
    if (owner === undefined) {
      owner = { owner: own(entry.owner), count: 0 }
      this.#owners.set(owner.owner, owner)
    }
    owner.count++
    const cut = entry.connection.lastIndexOf(':')
    const n = cut < 0 ? NaN : Number(entry.connection.slice(cut + 1))
    const numbered = Number.isSafeInteger(n) && n >= 0 && `${entry.connection.slice(0, cut)}:${n}` === entry.connection
    const prefix = numbered ? this.#share(entry.connection.slice(0, cut)) : own(entry.connection)
    this.#entries.set(own(clientId), { node, owner, prefix, n: numbered ? n : -1 })
  }

  #share (value: string): string {
    let shared = this.#shared.get(value)
    if (shared === undefined) this.#shared.set(value, shared = own(value))
    return shared
  }

  delete (clientId: string, connection?: string): void {
    const slot = this.#entries.get(clientId)
    if (slot === undefined || (connection !== undefined && connectionName(slot) !== connection)) return
    this.#entries.delete(clientId)
    if (--slot.owner.count === 0) this.#owners.delete(slot.owner.owner)
  }

  replace (entries: ReadonlyArray<readonly [string, Entry]>): void {
    this.#entries.clear()
    this.#owners.clear()
    this.#shared.clear()
    for (const [clientId, entry] of entries) this.set(clientId, entry)
  }

  /** `+id\tnode\towner\tconn`, `-id\tnode\towner\tconn`, `!node` */
  apply (message: string): void {
    const kind = message[0]
    const body = message.slice(1)
    if (kind === '!') {
      for (const [clientId, slot] of this.#entries) if (slot.node === body) this.delete(clientId)
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

/**
 * A copy of a string that holds nothing else: a part cut out of a change
 * message (slice, split) keeps the whole message alive for as long as the
 * mirror keeps the part.
 */
function own (part: string): string {
  return Buffer.from(part, 'utf8').toString('utf8')
}

function connectionName (slot: Slot): string {
  return slot.n < 0 ? slot.prefix : `${slot.prefix}:${slot.n}`
}
