import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { candidateOf, principalOf, recordingVerifier, rememberRecent, supersedes, type Cached, type KeepsPrincipal, type KnownRecord, type PrincipalDirectory } from '../known-principals.js'
import { PrincipalUpdates } from '../principal-updates.js'
import type { RedisConnection } from './connection.js'
import { defineScript } from './script.js'

export interface RedisPrincipalDirectory extends PrincipalDirectory {
  /** Stops following other nodes' changes (the connection stays open). */
  close (): Promise<void>
}

const HASH = 'known-principals'
const CHANNEL = 'known-principals-changes'

/**
 * A record as Redis holds it: `<issuedAt> <rights>`, the rights as JSON in a
 * fixed key order, so that the script compares rights as strings (the same
 * comparison as `supersedes`: role, groups and grants, in order).
 */
const rightsOf = (record: KnownRecord): string =>
  JSON.stringify({ groups: record.groups, role: record.role, grants: { pub: record.grants.pub, sub: record.grants.sub } })

function decode (raw: string): KnownRecord {
  const space = raw.indexOf(' ')
  const issuedAt = Number(raw.slice(0, space))
  const rights = JSON.parse(raw.slice(space + 1)) as Omit<KnownRecord, 'issuedAt'>
  if (space < 1 || !Number.isFinite(issuedAt) || !Array.isArray(rights.groups) || typeof rights.role !== 'string') throw new Error('known-principals: an unreadable record')
  return { groups: rights.groups, role: rights.role, grants: rights.grants, issuedAt }
}

/** `supersedes`, in Lua: the record is written unless the stored one was issued later, or says the same and is not older. */
const OFFER_LUA = `
-- KEYS: hash. ARGV: 1 sub, 2 issuedAt, 3 rights, 4 has iat ('1'), 5 channel
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local space = string.find(held, ' ', 1, true)
  local at = tonumber(string.sub(held, 1, space - 1))
  local candidate = tonumber(ARGV[2])
  if candidate < at then return {0, held} end
  if string.sub(held, space + 1) == ARGV[3] and not (ARGV[4] == '1' and candidate > at) then return {0, held} end
end
local value = ARGV[2] .. ' ' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('PUBLISH', ARGV[5], cjson.encode({ARGV[1], value}))
return {1, value}
`

/**
 * The newest principal of each user, shared by a cluster: a Redis hash
 * (`known-principals`, field = user id). "Newer" is decided in Redis by one
 * Lua script (compare-and-set on the issue time, as `supersedes` does), so
 * an older token can never overwrite a newer one, whichever nodes see them
 * in whichever order.
 *
 * `latest` reads Redis every time (one HMGET per call, the relay's batch):
 * a token seen on any node counts once its write resolved there. Each node
 * keeps a bounded cache of what it knows (as the LevelDB directory does) only
 * to skip the write when a token says nothing new, which is nearly every call;
 * other nodes' writes update it through pub/sub, and a subscriber reconnect
 * drops it (changes published meanwhile were lost). A stale cache costs at
 * most a script run that finds Redis newer, never a wrong answer.
 */
export async function openRedisPrincipalDirectory (conn: RedisConnection, logger: Logger, { keeps = () => true }: { keeps?: KeepsPrincipal } = {}): Promise<RedisPrincipalDirectory> {
  const { client } = conn
  const channel = conn.channel(CHANNEL)
  const offerScript = defineScript(client, 'heraldPrincipalOffer', 1, OFFER_LUA)
  const cache = new Map<string, Cached>()
  const updates = new PrincipalUpdates(logger)
  const remember = (sub: string, entry: Cached): void => rememberRecent(cache, sub, entry)
  /** Keeps `record` (as stored in Redis) unless the cache has a later stored one; records in Redis only ever get newer. */
  const stored = (sub: string, record: KnownRecord): void => {
    const cached = cache.get(sub)
    if (cached === undefined || !cached.persisted || cached.record.issuedAt <= record.issuedAt) remember(sub, { record, persisted: true })
  }

  const sub = await followChanges(conn, channel, cache, stored, logger)

  async function update (user: string, candidate: KnownRecord, hasIat: boolean): Promise<void> {
    const cached = cache.get(user)
    if (cached?.persisted === true && !supersedes(candidate, hasIat, cached.record)) return
    // in memory first: `latest` on this node decides by it from now on, even if Redis cannot take it
    if (cached !== undefined && supersedes(candidate, hasIat, cached.record)) remember(user, { record: candidate, persisted: false })
    const [, value] = await offerScript([HASH], [user, String(candidate.issuedAt), rightsOf(candidate), hasIat ? '1' : '0', channel]) as [number, string]
    stored(user, decode(value))
  }

  function seen (principal: Parameters<PrincipalDirectory['seen']>[0]): void {
    const offered = candidateOf(principal, keeps)
    if (offered === undefined) return
    const { sub: user, candidate, hasIat } = offered
    const cached = cache.get(user)
    // the path of nearly every call: nothing new about this user, no Redis round trip
    if (cached !== undefined && cached.persisted && !updates.has(user) && !supersedes(candidate, hasIat, cached.record)) {
      remember(user, cached)
      return
    }
    updates.run(user, async () => await update(user, candidate, hasIat))
  }

  return {
    seen,

    async latest (subs) {
      await updates.settled(subs)
      const raw = subs.length === 0 ? [] : await client.hmget(HASH, ...subs)
      return subs.map((user, i) => {
        const value = raw[i]
        const fromRedis = value === null || value === undefined ? undefined : decode(value)
        if (fromRedis !== undefined) stored(user, fromRedis)
        const cached = cache.get(user)
        // a newer record this node could not write yet
        const record = cached !== undefined && !cached.persisted && (fromRedis === undefined || cached.record.issuedAt >= fromRedis.issuedAt)
          ? cached.record
          : fromRedis
        return record === undefined ? undefined : principalOf(user, record)
      })
    },

    watch: (verifier) => recordingVerifier(verifier, seen),

    idle: async () => await updates.idle(),

    async close () {
      await sub.quit().catch(() => sub.disconnect())
    },
  }
}

/**
 * Applies other nodes' writes to the cached users, and drops what is cached
 * when the subscriber reconnects. Resolves the subscriber once it listens.
 */
async function followChanges (conn: RedisConnection, channel: string, cache: Map<string, Cached>, stored: (sub: string, record: KnownRecord) => void, logger: Logger): Promise<Redis> {
  const sub = conn.subscriber()
  let subscribed = false
  sub.on('message', (from: string, message: string) => {
    if (from !== channel) return
    try {
      const [user, raw] = JSON.parse(message) as [string, string]
      // only users this node knows already: the cache stays the users seen here
      if (cache.has(user)) stored(user, decode(raw))
    } catch (err) {
      logger.warn({ err }, 'an unreadable known-principals change message')
    }
  })
  sub.on('ready', () => {
    if (!subscribed) return
    // changes published while the subscriber was away are lost: forget what they may have changed
    for (const [user, entry] of cache) if (entry.persisted) cache.delete(user)
  })
  await sub.subscribe(channel)
  subscribed = true
  return sub
}
