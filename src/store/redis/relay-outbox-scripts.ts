/**
 * The Lua scripts and keys of the Redis relay outbox (relay-outbox.ts): the
 * heartbeat, the release at close and the clean-up of a consumer group; and
 * checkExec, for the replies of a MULTI.
 */

/** The outbox's keys, under the deployment's prefix (relay-outbox.ts says what each holds). */
export const KEYS = { stream: 'relay:jobs', state: 'relay:state', dead: 'relay:dead' }
/** The consumer group of the stream: one consumer per node. */
export const GROUP = 'relay'

export const REFRESH_LUA = `
-- KEYS: stream. ARGV: 1 group, 2 consumer, 3.. entry ids this node holds.
-- Resets the idle time of those still pending for this consumer; returns the others (taken over or gone).
local mine, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] ~= nil and p[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
if #mine > 0 then
  local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(mine) do args[#args + 1] = id end
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return lost
`

export const RELEASE_LUA = `
-- KEYS: stream. ARGV: 1 group, 2 consumer, 3 idle ms to set, 4 first entry id, 5 count.
-- Marks this consumer's pending entries as idle so that other nodes take them over; returns the last id seen ('' when done).
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[4], '+', tonumber(ARGV[5]), ARGV[2])
if #p == 0 then return '' end
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for _, e in ipairs(p) do args[#args + 1] = e[1] end
args[#args + 1] = 'IDLE'
args[#args + 1] = ARGV[3]
args[#args + 1] = 'JUSTID'
redis.call(unpack(args))
return p[#p][1]
`

export const FORGET_CONSUMER_LUA = `
-- KEYS: stream. ARGV: 1 group, 2 consumer. Deletes the consumer only when it holds nothing.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`

/** A MULTI's replies: the first error among them is thrown. */
export function checkExec (replies: Array<[Error | null, unknown]> | null): void {
  if (replies === null) throw new Error('relay outbox: transaction aborted')
  for (const [err] of replies) if (err !== null) throw err
}
