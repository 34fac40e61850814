import type { Redis } from 'ioredis'
import { HeraldError } from '../../errors/index.js'
import type { Installation, InstallationStore, PushToken } from '../installations.js'
import type { RedisStoreOptions } from './client-owners.js'
import type { RedisConnection } from './connection.js'
import { changeBody, openMirror, type RedisMirror } from './mirror.js'
import { defineScript, type Script } from './script.js'

export interface RedisInstallationStore extends InstallationStore {
  /** what the routing path reads: per installation id, `m`/`p` (MQTT or push-only) then `t`/`-` (push token or none) */
  readonly mirror: RedisMirror<string>
  /** Stops following other nodes' changes (the connection stays open). */
  close (): Promise<void>
}

/**
 * Keys (under the deployment's prefix):
 * - `installations`: hash, id → the installation as JSON;
 * - `installations:owner:<owner>`: set of the owner's installation ids (its
 *   size is what `maxPerOwner` is checked against);
 * - `installations:push-tokens`: hash, `<provider>:<token>` → id of the
 *   installation holding the token;
 * - `installations:flags`: hash, id → what `isPushOnly`/`hasPushToken` answer,
 *   mirrored on every node (store/redis/mirror.ts) with its sequence key and
 *   change channel.
 *
 * Each write is one Lua script that checks the records it was computed from
 * are unchanged (compare-and-set on the JSON read just before), checks the
 * owner limit, writes every key and publishes the flags' change. When another
 * node changed one of those records in between, the script writes nothing and
 * the write is computed again. So `maxPerOwner` is never exceeded and a push
 * token moves from one installation to another in one step, across nodes.
 * The script never decodes JSON (Lua's cjson turns [] into {}): the records are
 * built here.
 */
const KEYS = {
  byId: 'installations',
  ownerBase: 'installations:owner:',
  tokens: 'installations:push-tokens',
  flags: 'installations:flags',
  seq: 'installations:flags:seq',
}

/** Attempts of a write whose records keep changing under it before it gives up. */
const MAX_ATTEMPTS = 20

const PUT_LUA = `
-- KEYS: byId, tokens, ownerBase, flags, seq
-- ARGV: 1 id, 2 json, 3 owner, 4 previous json ('' none), 5 previous owner, 6 previous token key,
--       7 token key ('' none), 8 token holder read ('' none), 9 holder's json read, 10 holder's json without the token ('' none),
--       11 max per owner ('' none), 12 flags, 13 holder's new flags, 14 channel, 15 body
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[4] then return {'retry'} end
local moves = ARGV[7] ~= '' and ARGV[8] ~= '' and ARGV[8] ~= ARGV[1]
if ARGV[7] ~= '' then
  if (redis.call('HGET', KEYS[2], ARGV[7]) or '') ~= ARGV[8] then return {'retry'} end
  if moves and (redis.call('HGET', KEYS[1], ARGV[8]) or '') ~= ARGV[9] then return {'retry'} end
end
if ARGV[4] == '' and ARGV[11] ~= '' then
  local owned = redis.call('SCARD', KEYS[3] .. ARGV[3])
  if owned >= tonumber(ARGV[11]) then return {'full', owned} end
end
if ARGV[6] ~= '' and ARGV[6] ~= ARGV[7] and redis.call('HGET', KEYS[2], ARGV[6]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[6])
end
if moves and ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[8], ARGV[10])
  redis.call('HSET', KEYS[4], ARGV[8], ARGV[13])
end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], ARGV[7], ARGV[1]) end
if ARGV[4] ~= '' and ARGV[5] ~= ARGV[3] then redis.call('SREM', KEYS[3] .. ARGV[5], ARGV[1]) end
redis.call('SADD', KEYS[3] .. ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[12])
local seq = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[14], seq .. '\\n' .. ARGV[15])
return {'ok', seq}
`

const PRUNE_LUA = `
-- KEYS: byId, tokens, flags, seq. ARGV: 1 id, 2 json read, 3 json without the token, 4 token key, 5 flags, 6 channel, 7 body
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return {'retry'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[4]) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
local seq = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[6], seq .. '\\n' .. ARGV[7])
return {'ok', seq}
`

const DELETE_LUA = `
-- KEYS: byId, tokens, ownerBase, flags, seq. ARGV: 1 id, 2 json read, 3 owner, 4 token key ('' none), 5 channel, 6 body
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return {'retry'} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3] .. ARGV[3], ARGV[1])
if ARGV[4] ~= '' and redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[4]) end
redis.call('HDEL', KEYS[4], ARGV[1])
local seq = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', ARGV[5], seq .. '\\n' .. ARGV[6])
return {'ok', seq}
`

const tokenKey = (token: PushToken | null): string => token === null ? '' : `${token.provider}:${token.token}`
const flagsOf = (installation: Installation): string => `${installation.mqtt ? 'm' : 'p'}${installation.pushToken === null ? '-' : 't'}`

function decodeFlags (raw: string): string {
  if (!/^[mp][t-]$/.test(raw)) throw new Error('installations: unreadable flags')
  return raw
}

const parse = (json: string | null): Installation | undefined => json === null ? undefined : JSON.parse(json) as Installation

type ScriptResult = ['retry'] | ['full', number] | ['ok', number]

/** Runs `attempt` until its script found the records as read; resolves with what the last attempt returned. */
async function compareAndSet<T> (what: string, attempt: () => Promise<T | 'retry'>): Promise<T> {
  for (let i = 0; i < MAX_ATTEMPTS; i++) {
    const result = await attempt()
    if (result !== 'retry') return result
  }
  throw new HeraldError('SERVER_UNAVAILABLE', `the installation changed on each of ${MAX_ATTEMPTS} attempts to ${what} it; try again`)
}

/** What a write script answered: 'retry' when the records changed, TOO_MANY_INSTALLATIONS when full; once written, waits for this node's mirror to have it. */
async function written (mirror: RedisMirror<string>, result: ScriptResult): Promise<'retry' | undefined> {
  if (result[0] === 'retry') return 'retry'
  if (result[0] === 'full') throw new HeraldError('TOO_MANY_INSTALLATIONS', `the user has ${result[1]} installations (limits.maxInstallationsPerUser): delete one before registering another`)
  await mirror.caughtUp(Number(result[1]))
  return undefined
}

/** One attempt of `put`: reads the records it depends on, then writes them all in one script unless they changed meanwhile. */
async function putOnce (client: Redis, mirror: RedisMirror<string>, putScript: Script, installation: Installation, max: number | undefined): Promise<'retry' | undefined> {
  const token = tokenKey(installation.pushToken)
  const [previousJson, holder] = await Promise.all([
    client.hget(KEYS.byId, installation.id),
    token === '' ? Promise.resolve(null) : client.hget(KEYS.tokens, token),
  ])
  const previous = parse(previousJson)
  // a device that changed hands registers its token again: it leaves the old installation
  const moves = holder !== null && holder !== installation.id
  const holderJson = moves ? await client.hget(KEYS.byId, holder) : null
  const holderRecord = parse(holderJson)
  const displaced = holderRecord === undefined ? undefined : { ...holderRecord, pushToken: null, updatedAt: installation.updatedAt }
  const changes: Array<[string, string | null]> = [[installation.id, flagsOf(installation)]]
  if (moves && displaced !== undefined) changes.push([holder, flagsOf(displaced)])
  const result = await putScript(
    [KEYS.byId, KEYS.tokens, KEYS.ownerBase, KEYS.flags, KEYS.seq],
    [
      installation.id, JSON.stringify(installation), installation.owner,
      previousJson ?? '', previous?.owner ?? '', tokenKey(previous?.pushToken ?? null),
      token, holder ?? '', holderJson ?? '', displaced === undefined ? '' : JSON.stringify(displaced),
      max ?? '', flagsOf(installation), displaced === undefined ? '' : flagsOf(displaced),
      mirror.channel, changeBody(changes),
    ]) as ScriptResult
  return await written(mirror, result)
}

/**
 * Installations of a cluster, in Redis (see KEYS). `get`, `getMany` and
 * `listByOwner` read Redis; `isPushOnly`/`hasPushToken` answer from the
 * mirrored flags: a change is in the writing node's mirror when its write
 * resolves, and in the other nodes' once they have its change message.
 */
export async function openRedisInstallationStore (conn: RedisConnection, options: RedisStoreOptions = {}): Promise<RedisInstallationStore> {
  const { client } = conn
  const mirror = await openMirror<string>(conn, {
    hash: KEYS.flags,
    seqKey: KEYS.seq,
    channel: 'installations-changes',
    decode: decodeFlags,
    ...(options.onError !== undefined && { onError: options.onError }),
  })
  const putScript = defineScript(client, 'heraldInstallationPut', 5, PUT_LUA)
  const pruneScript = defineScript(client, 'heraldInstallationPrune', 4, PRUNE_LUA)
  const deleteScript = defineScript(client, 'heraldInstallationDelete', 5, DELETE_LUA)

  return {
    mirror,
    get: async (id) => parse(await client.hget(KEYS.byId, id)),
    getMany: async (ids) => ids.length === 0 ? [] : (await client.hmget(KEYS.byId, ...ids)).map(parse),
    isPushOnly: (id) => mirror.get(id)?.[0] === 'p',
    hasPushToken: (id) => mirror.get(id)?.[1] === 't',

    async listByOwner (owner) {
      // in id order, as LevelDB lists them
      const ids = (await client.smembers(`${KEYS.ownerBase}${owner}`)).sort()
      if (ids.length === 0) return []
      return (await client.hmget(KEYS.byId, ...ids)).map(parse).filter((i): i is Installation => i !== undefined)
    },

    put: async (installation, options) => await compareAndSet('store', async () => await putOnce(client, mirror, putScript, installation, options?.maxPerOwner)),

    prunePushToken: async (id, token) => await compareAndSet('prune the push token of', async () => {
      const json = await client.hget(KEYS.byId, id)
      const installation = parse(json)
      if (json === null || installation?.pushToken?.token !== token) return undefined
      const pruned: Installation = { ...installation, pushToken: null, updatedAt: new Date().toISOString() }
      const result = await pruneScript(
        [KEYS.byId, KEYS.tokens, KEYS.flags, KEYS.seq],
        [id, json, JSON.stringify(pruned), tokenKey(installation.pushToken), flagsOf(pruned), mirror.channel, changeBody([[id, flagsOf(pruned)]])]
      ) as ScriptResult
      return await written(mirror, result)
    }),

    delete: async (id) => await compareAndSet('delete', async () => {
      const json = await client.hget(KEYS.byId, id)
      const installation = parse(json)
      if (json === null || installation === undefined) return undefined
      const result = await deleteScript(
        [KEYS.byId, KEYS.tokens, KEYS.ownerBase, KEYS.flags, KEYS.seq],
        [id, json, installation.owner, tokenKey(installation.pushToken), mirror.channel, changeBody([[id, null]])]
      ) as ScriptResult
      return await written(mirror, result) ?? installation
    }),

    close: async () => await mirror.close(),
  }
}
