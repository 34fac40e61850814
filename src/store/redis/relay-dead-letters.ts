import type { Redis } from 'ioredis'
import type { DeadLetter, RelayJob } from '../../../plugins/push-core/index.js'
import { defineScript, type Script } from './script.js'
import { KEYS } from './relay-outbox-scripts.js'

const REVIVE_LUA = `
-- KEYS: dead hash, stream. ARGV: 1 job id, 2 the dead letter as read, 3 the revived job.
-- Moves the dead letter back into the stream only if it is still the one read: of two replays, one does.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[3])
return 1
`

/**
 * The dead letters of the Redis relay outbox (hash `relay:dead`, job id → the
 * dead letter as JSON): reading, replaying and purging them. Dead-lettering a
 * job stays with the outbox, which removes its stream entry in the same MULTI.
 */
export class RedisDeadLetters {
  readonly #client: Redis
  readonly #revive: Script

  constructor (client: Redis) {
    this.#client = client
    this.#revive = defineScript(client, 'heraldRelayRevive', 2, REVIVE_LUA)
  }

  async * all (): AsyncIterable<DeadLetter> {
    let cursor = '0'
    do {
      const [next, flat] = await this.#client.hscan(KEYS.dead, cursor, 'COUNT', 200)
      cursor = next
      for (let i = 1; i < flat.length; i += 2) yield JSON.parse(flat[i] as string) as DeadLetter
    } while (cursor !== '0')
  }

  async list ({ after, limit }: { after?: string, limit: number }): Promise<{ letters: DeadLetter[], next: string | null }> {
    // a hash has no order: its ids are sorted here (a few dozen bytes each), the page's letters read by id
    const ids = (await this.#client.hkeys(KEYS.dead)).filter((id) => after === undefined || id > after).sort(byteOrder)
    const page = ids.slice(0, limit)
    if (page.length === 0) return { letters: [], next: null }
    const values = await this.#client.hmget(KEYS.dead, ...page)
    const letters = values.flatMap((raw) => raw === null ? [] : [JSON.parse(raw) as DeadLetter])
    return { letters, next: ids.length > limit ? page[page.length - 1] ?? null : null }
  }

  async get (id: string): Promise<DeadLetter | undefined> {
    const raw = await this.#client.hget(KEYS.dead, id)
    return raw === null ? undefined : JSON.parse(raw) as DeadLetter
  }

  async replay (id: string, revive: (letter: DeadLetter) => RelayJob): Promise<RelayJob | undefined> {
    // the script moves the letter only if it is the one read; one changed meanwhile (dead-lettered again) is read again
    for (let tries = 0; tries < 5; tries++) {
      const raw = await this.#client.hget(KEYS.dead, id)
      if (raw === null) return undefined
      const job = revive(JSON.parse(raw) as DeadLetter)
      if (await this.#revive([KEYS.dead, KEYS.stream], [id, raw, JSON.stringify(job)]) === 1) return job
    }
    return undefined
  }

  async delete (ids?: readonly string[]): Promise<number> {
    if (ids === undefined) {
      const [[err, count] = [null, 0]] = await this.#client.multi().hlen(KEYS.dead).del(KEYS.dead).exec() ?? []
      if (err !== null) throw err
      return Number(count)
    }
    if (ids.length === 0) return 0
    return await this.#client.hdel(KEYS.dead, ...ids)
  }

  async count (): Promise<number> {
    return await this.#client.hlen(KEYS.dead)
  }
}

/** Job ids compared as LevelDB compares keys (UTF-8 bytes; ids are ASCII), so both stores page alike. */
function byteOrder (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
