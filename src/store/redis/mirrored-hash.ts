import type { RedisConnection } from './connection.js'
import { changeBody, openMirror, type MirrorOptions, type RedisMirror } from './mirror.js'
import { defineScript } from './script.js'

/**
 * The common writes on a mirrored hash. Each returns the change's sequence
 * number (0 when nothing was written), after the change is in this node's mirror.
 */
const PUT_LUA = `
-- KEYS: hash, seq. ARGV: field, value, onlyIfAbsent ('1'), channel, body
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and ARGV[3] == '1' then return {0, held, redis.call('GET', KEYS[2]) or '0'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], seq .. '\\n' .. ARGV[5])
return {1, ARGV[2], seq}
`

const DELETE_LUA = `
-- KEYS: hash, seq. ARGV: field, expected value ('' any), channel, body
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held or (ARGV[2] ~= '' and held ~= ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], seq .. '\\n' .. ARGV[4])
return seq
`

export interface MirroredHash<V> {
  readonly mirror: RedisMirror<V>
  /**
   * Sets the field; with `onlyIfAbsent`, only when it has none. Resolves with
   * whether it wrote and the value the field holds now (the one found, when
   * it did not write), once this node's mirror has it.
   */
  put (field: string, value: string, onlyIfAbsent: boolean): Promise<{ written: boolean, value: string }>
  /** Deletes the field, only if it holds `expected` when given; resolves whether it did, once this node's mirror has it. */
  delete (field: string, expected?: string): Promise<boolean>
}

let scriptCount = 0

/** A mirrored hash with put and delete, the whole of what client-owners and app-topics need. */
export async function openMirroredHash<V> (conn: RedisConnection, options: MirrorOptions<V>): Promise<MirroredHash<V>> {
  const mirror = await openMirror(conn, options)
  const id = ++scriptCount
  const putScript = defineScript(conn.client, `heraldMirrorPut${id}`, 2, PUT_LUA)
  const deleteScript = defineScript(conn.client, `heraldMirrorDelete${id}`, 2, DELETE_LUA)
  const keys = [options.hash, options.seqKey]
  return {
    mirror,
    async put (field, value, onlyIfAbsent) {
      const body = changeBody([[field, value]])
      const [written, now, seq] = await putScript(keys, [field, value, onlyIfAbsent ? '1' : '0', mirror.channel, body]) as [number, string, number | string]
      // also when it did not write: the value found is in this node's mirror before the caller sees it
      await mirror.caughtUp(Number(seq))
      return { written: written === 1, value: now }
    },
    async delete (field, expected) {
      const seq = Number(await deleteScript(keys, [field, expected ?? '', mirror.channel, changeBody([[field, null]])]))
      if (seq === 0) return false
      await mirror.caughtUp(seq)
      return true
    },
  }
}
