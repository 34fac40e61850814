import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import { Readable } from 'node:stream'
import { WILL_CLIENTS_KEY, WILLS_KEY, parseWillKey, willBrokersKey, willKey } from './session-keys.js'

type Arg = string | Buffer | number

interface WillCommands {
  heraldSessionDelWillBuffer (...args: Arg[]): Promise<Buffer | null>
}

/**
 * KEYS: the will, the list of wills, the client's will brokers, the clients
 * with a will. ARGV: the will key, broker id, client id. Returns the will.
 */
const DEL_WILL = `
local will = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('SCARD', KEYS[3]) == 0 then redis.call('SREM', KEYS[4], ARGV[3]) end
return will
`

/**
 * Wills, as aedes-persistence-redis keeps them: by the broker that holds the
 * connection (`will:<broker id>:<client>`, listed in `will`), so that when a
 * broker dies the others find its wills (streamWill, given the brokers they
 * hear heartbeats from) and publish them. Herald writes them atomically (the
 * library leaves two of its three writes unawaited, an unhandled rejection
 * when Redis is away) and keeps, per client, which brokers hold one, so that
 * session expiry and deleteSession find a client's wills without reading
 * them all.
 *
 * A dead broker's will is published once: every node's aedes looks for them
 * at about the same time (every 4 heartbeats), and publishes before it
 * deletes; here streamWill takes each will out of Redis (the delete script)
 * and yields only those it took, so one node gets each. The price: a node
 * that dies between taking a will and publishing it loses that will: at most
 * once, where aedes on its own gives at least once (duplicates).
 */
export class RedisWills {
  readonly #client: Redis & WillCommands

  constructor (client: Redis) {
    client.defineCommand('heraldSessionDelWill', { numberOfKeys: 4, lua: DEL_WILL })
    this.#client = client as Redis & WillCommands
  }

  /** Stores the client's will under this broker; the packet gains `clientId` and `brokerId`, as aedes' persistences do. */
  async put (brokerId: string, clientId: string, packet: Record<string, unknown>): Promise<void> {
    packet.clientId = clientId
    packet.brokerId = brokerId
    const key = willKey(brokerId, clientId)
    const results = await this.#client.multi()
      .set(key, msgpack.encode(packet))
      .lrem(WILLS_KEY, 0, key)
      .rpush(WILLS_KEY, key)
      .sadd(willBrokersKey(clientId), brokerId)
      .sadd(WILL_CLIENTS_KEY, clientId)
      .exec()
    for (const [err] of results ?? []) if (err !== null) throw err
  }

  async get (brokerId: string, clientId: string): Promise<unknown> {
    const stored = await this.#client.getBuffer(willKey(brokerId, clientId))
    return stored === null ? undefined : msgpack.decode(stored)
  }

  /** Deletes the will the broker stored for the client; resolves with it (undefined: there was none). */
  async del (brokerId: string, clientId: string): Promise<unknown> {
    const key = willKey(brokerId, clientId)
    const will = await this.#client.heraldSessionDelWillBuffer(key, WILLS_KEY, willBrokersKey(clientId), WILL_CLIENTS_KEY, key, brokerId, clientId)
    return will === null ? undefined : msgpack.decode(will)
  }

  /** Deletes the client's wills, whichever brokers hold them. */
  async delAll (clientId: string): Promise<void> {
    for (const brokerId of await this.#client.smembers(willBrokersKey(clientId))) await this.del(brokerId, clientId)
  }

  async has (clientId: string): Promise<boolean> {
    return await this.#client.sismember(WILL_CLIENTS_KEY, clientId) === 1
  }

  /**
   * The wills of brokers not in `brokers` (broker id → last heartbeat), each
   * taken out of Redis as it is read: aedes publishes them (those of dead
   * brokers), and of several nodes looking at once only one gets each.
   */
  stream (brokers?: Record<string, number>): NodeJS.ReadableStream {
    const wills = this
    return Readable.from((async function * () {
      for (const key of await wills.#client.lrange(WILLS_KEY, 0, -1)) {
        const named = parseWillKey(key)
        if (named === undefined || (brokers !== undefined && brokers[named.brokerId] !== undefined)) continue
        const will = await wills.del(named.brokerId, named.clientId)
        // taken by another node, or deleted since the list was read
        if (will !== undefined) yield will
      }
    })())
  }
}
