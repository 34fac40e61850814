import Packet from 'aedes-packet'
import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import { incomingIdsKey, incomingPrefix } from './session-keys.js'

type Arg = string | Buffer | number

interface IncomingCommands {
  heraldSessionCleanIncoming (...args: Arg[]): Promise<number>
}

/** KEYS: the client's set of incoming ids. ARGV: the prefixed key prefix of its incoming messages. */
const CLEAN = `
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id) end
redis.call('DEL', KEYS[1])
return #ids
`

/**
 * Incoming QoS 2 messages waiting for their PUBREL, under the library's keys
 * (`incoming:<client>:<message id>`), with a set of each client's ids beside
 * them: aedes 1.2 asks the store to clean a client's incoming messages
 * (cleanIncoming, at a clean CONNECT and close), which the library cannot do
 * without scanning the whole key space.
 */
export class RedisIncoming {
  readonly #client: Redis & IncomingCommands

  constructor (client: Redis) {
    client.defineCommand('heraldSessionCleanIncoming', { numberOfKeys: 1, lua: CLEAN })
    this.#client = client as Redis & IncomingCommands
  }

  async store (clientId: string, packet: { messageId?: number }): Promise<void> {
    const copy = new Packet(packet) as Packet & { messageId?: number }
    copy.messageId = packet.messageId
    const results = await this.#client.multi()
      .set(`${incomingPrefix(clientId)}${String(packet.messageId)}`, msgpack.encode(copy))
      .sadd(incomingIdsKey(clientId), String(packet.messageId))
      .exec()
    for (const [err] of results ?? []) if (err !== null) throw err
  }

  /** Rejects when there is no such message (aedes tells a new PUBLISH from a resent one by that). */
  async get (clientId: string, messageId: number | undefined): Promise<unknown> {
    const stored = await this.#client.getBuffer(`${incomingPrefix(clientId)}${String(messageId)}`)
    if (stored === null) throw new Error('no such packet')
    return msgpack.decode(stored)
  }

  async del (clientId: string, messageId: number | undefined): Promise<void> {
    const results = await this.#client.multi()
      .del(`${incomingPrefix(clientId)}${String(messageId)}`)
      .srem(incomingIdsKey(clientId), String(messageId))
      .exec()
    for (const [err] of results ?? []) if (err !== null) throw err
  }

  async clean (clientId: string): Promise<void> {
    await this.#client.heraldSessionCleanIncoming(incomingIdsKey(clientId), `${this.#client.options.keyPrefix ?? ''}${incomingPrefix(clientId)}`)
  }
}
