import Packet from 'aedes-packet'
import type { PersistedPacket } from 'aedes-persistence-level/asyncPersistence.js'
import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import { Readable } from 'node:stream'
import { MESSAGE_KEY_PREFIX, QUEUES_KEY, messageEntry, messageKey, queueIdsKey, queueKey } from './session-keys.js'

type Arg = string | Buffer | number

/** The Lua scripts below, as ioredis defines them (defineCommand: KEYS are prefixed by ioredis). */
interface QueueCommands {
  heraldSessionQueueEnqueue (numKeys: number, ...args: Arg[]): Promise<number[]>
  heraldSessionQueueClearBuffer (numKeys: number, ...args: Arg[]): Promise<[Buffer, Buffer | null] | null>
  heraldSessionQueuePubrel (numKeys: number, ...args: Arg[]): Promise<number>
  heraldSessionQueueTrim (numKeys: number, ...args: Arg[]): Promise<number>
  heraldSessionQueueDelete (numKeys: number, ...args: Arg[]): Promise<number>
}

/**
 * Shared by the scripts. `forget`: an entry leaves the queue, and its message
 * id with it; `release`: one entry fewer names the message, whose hash goes
 * with the last one. Message keys are built inside the script from ARGV's
 * key prefix (the prefixed `msg:`): this is for one Redis (or Sentinel), not
 * Redis Cluster, whose scripts may touch only the keys they declare.
 */
const HELPERS = `
local function forget (ids, entry)
  local mid = redis.call('HGET', ids, 'e:' .. entry)
  if mid then
    redis.call('HDEL', ids, 'e:' .. entry)
    if redis.call('HGET', ids, 'm:' .. mid) == entry then redis.call('HDEL', ids, 'm:' .. mid) end
  end
end
local function release (entry, prefix)
  if string.sub(entry, 1, 2) == 'm:' then
    local key = prefix .. string.sub(entry, 3)
    if redis.call('HINCRBY', key, 'n', -1) <= 0 then redis.call('DEL', key) end
  end
end
local function trim (queue, ids, length, max, prefix)
  if max <= 0 or length <= max then return 0 end
  local popped = redis.call('LPOP', queue, length - max)
  for _, entry in ipairs(popped) do
    forget(ids, entry)
    release(entry, prefix)
  end
  return #popped
end
`

/**
 * KEYS: the message, the set of queues, then each recipient's queue and ids.
 * ARGV: the entry, the packet, the bound (0: none), the message key prefix,
 * then each recipient's client id. Returns how many old entries each
 * recipient's queue dropped.
 */
const ENQUEUE = `${HELPERS}
local count = (#KEYS - 2) / 2
redis.call('HSET', KEYS[1], 'p', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', count)
local max = tonumber(ARGV[3])
local dropped = {}
for i = 1, count do
  local queue, ids = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local length = redis.call('RPUSH', queue, ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[4 + i])
  dropped[i] = trim(queue, ids, length, max, ARGV[4])
end
return dropped
`

/**
 * PUBACK (or PUBCOMP). KEYS: queue, ids, set of queues. ARGV: message id,
 * message key prefix, client id. Returns the entry and the packet (nil for
 * a PUBREL), or nil for an unknown message id.
 */
const CLEAR = `${HELPERS}
local entry = redis.call('HGET', KEYS[2], 'm:' .. ARGV[1])
if not entry then return nil end
forget(KEYS[2], entry)
redis.call('HDEL', KEYS[2], 'm:' .. ARGV[1])
local removed = redis.call('LREM', KEYS[1], 1, entry)
local packet = false
if string.sub(entry, 1, 2) == 'm:' then
  packet = redis.call('HGET', ARGV[2] .. string.sub(entry, 3), 'p')
  if removed > 0 then release(entry, ARGV[2]) end
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
return { entry, packet }
`

/**
 * PUBREC: the message becomes a PUBREL in its place. KEYS: queue, ids, set
 * of queues. ARGV: message id, message key prefix, client id.
 */
const PUBREL = `${HELPERS}
local rel = 'r:' .. ARGV[1]
local entry = redis.call('HGET', KEYS[2], 'm:' .. ARGV[1])
if entry == rel then return 0 end
local placed = false
if entry then
  forget(KEYS[2], entry)
  local at = redis.call('LPOS', KEYS[1], entry)
  if at then
    redis.call('LSET', KEYS[1], at, rel)
    release(entry, ARGV[2])
    placed = true
  end
end
if not placed then
  redis.call('RPUSH', KEYS[1], rel)
  redis.call('SADD', KEYS[3], ARGV[3])
end
redis.call('HSET', KEYS[2], 'm:' .. ARGV[1], rel, 'e:' .. rel, ARGV[1])
return 1
`

/** KEYS: queue, ids, set of queues. ARGV: bound, message key prefix, client id. Returns how many entries were dropped. */
const TRIM = `${HELPERS}
local dropped = trim(KEYS[1], KEYS[2], redis.call('LLEN', KEYS[1]), tonumber(ARGV[1]), ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
return dropped
`

/** KEYS: queue, ids, set of queues. ARGV: message key prefix, client id. */
const DELETE = `${HELPERS}
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
for _, entry in ipairs(entries) do release(entry, ARGV[1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return #entries
`

/** Queue entries are read this many at a time (one pipeline each). */
const READ_CHUNK = 128

/**
 * The QoS 1 and 2 queues of persistent sessions in Redis, with message ids in
 * flight, shared by every node: a message queued on one node is read,
 * acknowledged or dropped on any other.
 *
 * - A message for several recipients is stored once (messageKey) with a count
 *   of the queue entries that name it; each recipient's queue is a list of
 *   entries in the order Redis received them.
 * - Every change is one Lua script, so it is atomic across nodes: an enqueue
 *   writes the message, appends it to every recipient's queue and cuts each
 *   queue to its newest `max` entries (`limits.maxQueuedMessagesPerSession`)
 *   at once; a PUBACK removes the entry, its message id and, with the last
 *   entry, the message.
 * - Message ids in flight live in Redis too (`queue-ids:<client>`), so a
 *   PUBACK is understood by whichever node the client is connected to, and a
 *   queue read after a takeover gives each message the id it was sent with
 *   (aedes resends it under that id).
 * - The bound is applied to every queue, connected clients' too: the entries
 *   of a connected client are those it has not acknowledged yet, and past
 *   `max` of those the oldest are the ones a device back from a bad network
 *   wants least (store/queue-bound.ts says why the oldest go).
 */
export class RedisQueues {
  readonly #client: Redis & QueueCommands
  /** the prefixed `msg:` key prefix, for the message keys the scripts build */
  readonly #messagePrefix: string
  /** `limits.maxQueuedMessagesPerSession`; 0: no bound */
  max = 0

  constructor (client: Redis) {
    client.defineCommand('heraldSessionQueueEnqueue', { lua: ENQUEUE })
    client.defineCommand('heraldSessionQueueClear', { lua: CLEAR })
    client.defineCommand('heraldSessionQueuePubrel', { lua: PUBREL })
    client.defineCommand('heraldSessionQueueTrim', { lua: TRIM })
    client.defineCommand('heraldSessionQueueDelete', { lua: DELETE })
    this.#client = client as Redis & QueueCommands
    this.#messagePrefix = `${client.options.keyPrefix ?? ''}${MESSAGE_KEY_PREFIX}`
  }

  /** Appends the message to each client's queue; resolves, once Redis has it, with how many old entries each queue dropped. */
  async enqueue (clientIds: readonly string[], packet: PersistedPacket): Promise<number[]> {
    if (clientIds.length === 0) return []
    const keys = [messageKey(packet.brokerId, packet.brokerCounter), QUEUES_KEY]
    for (const clientId of clientIds) keys.push(queueKey(clientId), queueIdsKey(clientId))
    // aedes-packet's copy: the fields aedes persists, and no message id (each recipient gets its own)
    const encoded = msgpack.encode(new Packet(packet))
    return await this.#client.heraldSessionQueueEnqueue(keys.length, ...keys, messageEntry(packet.brokerId, packet.brokerCounter), encoded, this.max, this.#messagePrefix, ...clientIds)
  }

  /** A message goes in flight under a message id; a PUBREL (QoS 2) takes its message's place. */
  async update (clientId: string, packet: { cmd?: string, messageId?: number, brokerId?: string, brokerCounter?: number }): Promise<void> {
    const { messageId } = packet
    if (messageId === undefined) return
    if (packet.cmd === 'pubrel') {
      await this.#client.heraldSessionQueuePubrel(3, queueKey(clientId), queueIdsKey(clientId), QUEUES_KEY, messageId, this.#messagePrefix, clientId)
      return
    }
    if (packet.brokerId === undefined || packet.brokerCounter === undefined) return
    const entry = messageEntry(packet.brokerId, packet.brokerCounter)
    await this.#client.hset(queueIdsKey(clientId), `m:${messageId}`, entry, `e:${entry}`, String(messageId))
  }

  /** PUBACK/PUBCOMP: the entry leaves the queue. Resolves with the packet as it was queued (with its message id), or undefined for an unknown id. */
  async clear (clientId: string, messageId: number | undefined): Promise<unknown> {
    if (typeof messageId !== 'number') return undefined
    const cleared = await this.#client.heraldSessionQueueClearBuffer(3, queueKey(clientId), queueIdsKey(clientId), QUEUES_KEY, messageId, this.#messagePrefix, clientId)
    if (cleared === null) return undefined
    const [entry, packet] = cleared
    if (entry.toString().startsWith('r:')) return { cmd: 'pubrel', messageId }
    if (packet === null) return undefined
    return withMessageId(msgpack.decode(packet), messageId)
  }

  /** The client's queue, oldest first, each message with the id it was sent under (if it was). */
  stream (clientId: string): NodeJS.ReadableStream & AsyncIterable<PersistedPacket> {
    const client = this.#client
    return Readable.from((async function * () {
      const entries = await client.lrange(queueKey(clientId), 0, -1)
      for (let start = 0; start < entries.length; start += READ_CHUNK) {
        const chunk = entries.slice(start, start + READ_CHUNK)
        const pipeline = client.pipeline()
        for (const entry of chunk) {
          if (entry.startsWith('m:')) pipeline.hgetBuffer(`${MESSAGE_KEY_PREFIX}${entry.slice(2)}`, 'p')
          pipeline.hget(queueIdsKey(clientId), `e:${entry}`)
        }
        const replies = (await pipeline.exec()) ?? []
        let at = 0
        const orphans: string[] = []
        for (const entry of chunk) {
          const packet = entry.startsWith('m:') ? replyOf<Buffer>(replies[at++]) : undefined
          const id = replyOf<string>(replies[at++])
          const messageId = id === null || id === undefined ? undefined : Number(id)
          if (entry.startsWith('r:')) {
            yield { cmd: 'pubrel', messageId: Number(entry.slice(2)) } as unknown as PersistedPacket
          } else if (packet === null || packet === undefined) {
            orphans.push(entry)
          } else {
            yield withMessageId(msgpack.decode(packet), messageId)
          }
        }
        // an entry whose message is gone (only a Redis that evicts keys loses one): not kept for ever
        for (const entry of orphans) await client.lrem(queueKey(clientId), 1, entry)
      }
    })())
  }

  /** Removes the client's queue and its message ids. */
  async delete (clientId: string): Promise<void> {
    await this.#client.heraldSessionQueueDelete(3, queueKey(clientId), queueIdsKey(clientId), QUEUES_KEY, this.#messagePrefix, clientId)
  }

  /** Cuts every queue to the bound (a lowered bound, or queues written without one); calls `onDropped` for each queue cut. */
  async trimAll (onDropped: (clientId: string, count: number) => void): Promise<void> {
    if (this.max <= 0) return
    let cursor = '0'
    do {
      const [next, clientIds] = await this.#client.sscan(QUEUES_KEY, cursor, 'COUNT', 500)
      cursor = next
      const dropped = await Promise.all(clientIds.map(async (clientId) =>
        await this.#client.heraldSessionQueueTrim(3, queueKey(clientId), queueIdsKey(clientId), QUEUES_KEY, this.max, this.#messagePrefix, clientId)))
      clientIds.forEach((clientId, i) => { if ((dropped[i] ?? 0) > 0) onDropped(clientId, dropped[i] ?? 0) })
    } while (cursor !== '0')
  }

  /** Whether the client has queued messages (a PUBREL counts). */
  async has (clientId: string): Promise<boolean> {
    return await this.#client.exists(queueKey(clientId)) === 1
  }
}

/** A pipeline reply's value; a failed command throws its error. */
function replyOf<T> (reply: [Error | null, unknown] | undefined): T | null | undefined {
  if (reply === undefined) return undefined
  if (reply[0] !== null) throw reply[0]
  return reply[1] as T | null
}

function withMessageId (decoded: unknown, messageId: number | undefined): PersistedPacket {
  const packet = decoded as PersistedPacket
  packet.messageId = messageId
  return packet
}
