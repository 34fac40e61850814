import type { Redis } from 'ioredis'
import { scopePath, type BucketScope } from '../../buckets/index.js'
import { defineScript, type Script } from './script.js'

/**
 * Where the Redis bucket store keeps things (ioredis adds `cluster.keyPrefix`):
 * - `buckets:objects:{scope}/{bucket}`: hash, object id → object JSON;
 * - `buckets:ids:{scope}/{bucket}`: sorted set of the object ids, all of
 *   score 0, so ZRANGEBYLEX lists them in byte order (as LevelDB keys sort);
 * - `buckets:app`: hash, app bucket name → AppBucket JSON (tombstones too),
 *   mirrored on every node (mirror.ts), `buckets:app-seq` its change counter;
 * - `buckets:pending:{node}`: stream of the events a node wrote and has not
 *   published yet, `buckets:nodes` the nodes that may have one,
 *   `buckets:lease:{node}` a node's lease on its stream (bucket-events.ts).
 * `{scope}` is `app`, `users/{uid}` or `groups/{gid}` and a bucket name has
 * no `/` or `:`, so no two buckets share a key.
 */
export const bucketKeys = {
  objects: (scope: BucketScope, bucket: string): string => `buckets:objects:${scopePath(scope)}/${bucket}`,
  ids: (scope: BucketScope, bucket: string): string => `buckets:ids:${scopePath(scope)}/${bucket}`,
  app: 'buckets:app',
  appSeq: 'buckets:app-seq',
  nodes: 'buckets:nodes',
  pending: (node: string): string => `buckets:pending:${node}`,
  lease: (node: string): string => `buckets:lease:${node}`,
}

/** What a script answers when the value it was given to compare is no longer there: read again and retry. */
export const CONFLICT = -2
/** An object write into an app bucket that does not exist (or was deleted). */
export const NO_BUCKET = -1

// Every write is compare-and-set: the writer read the current value, decided
// in JavaScript (preconditions, merge patch, versions: src/buckets/changes.ts)
// and hands the script the value it read. The script writes only if that is
// still the value, in the same step as the pending event (XADD), so a write
// and its event are never apart, and of writers racing on one version,
// across any number of nodes, one wins and the others read again.

/**
 * KEYS: objects, ids, app, pending stream, nodes.
 * ARGV: id, value read ('' none), new value ('' delete), app bucket name ('' not app), topic, event, node.
 * Returns the pending entry's id, CONFLICT or NO_BUCKET.
 */
const WRITE_OBJECT = `
if ARGV[4] ~= '' then
  local app = redis.call('HGET', KEYS[3], ARGV[4])
  if not app or cjson.decode(app).deletedAt ~= cjson.null then return ${NO_BUCKET} end
end
local held = redis.call('HGET', KEYS[1], ARGV[1])
if (ARGV[2] == '' and held) or (ARGV[2] ~= '' and held ~= ARGV[2]) then return ${CONFLICT} end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
redis.call('SADD', KEYS[5], ARGV[7])
return redis.call('XADD', KEYS[4], '*', 'topic', ARGV[5], 'event', ARGV[6])
`

/**
 * KEYS: objects, ids, app, app seq, pending stream, nodes.
 * ARGV: app bucket name ('' not app), its value read, its tombstone, channel, change message body, topic, event, node.
 * Returns [objects dropped, app change number (0: none), pending entry id], or CONFLICT.
 */
const DELETE_BUCKET = `
if ARGV[1] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return ${CONFLICT} end
local dropped = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
local seq = 0
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  seq = redis.call('INCR', KEYS[4])
  redis.call('PUBLISH', ARGV[4], seq .. '\\n' .. ARGV[5])
end
redis.call('SADD', KEYS[6], ARGV[8])
local id = redis.call('XADD', KEYS[5], '*', 'topic', ARGV[6], 'event', ARGV[7])
return {dropped, seq, id}
`

/**
 * KEYS: app, app seq. ARGV: name, value read ('' none), new value, channel, change message body.
 * Returns the change number (mirror.ts's protocol), or CONFLICT.
 */
const PUT_APP_BUCKET = `
local held = redis.call('HGET', KEYS[1], ARGV[1])
if (ARGV[2] == '' and held) or (ARGV[2] ~= '' and held ~= ARGV[2]) then return ${CONFLICT} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], seq .. '\\n' .. ARGV[5])
return seq
`

/** KEYS: ids, objects. ARGV: ZRANGEBYLEX min, count. The values of up to `count` objects from `min` on, in id order (one snapshot). */
const LIST_OBJECTS = `
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
`

/**
 * KEYS: the dead node's lease, its stream, this node's stream, nodes.
 * ARGV: dead node, this node, how many entries at most.
 * Moves a dead node's pending events to this node's stream, in order, and
 * returns them as [[new id, [field, value, ...]], ...]; nil while its lease
 * holds. In one script, so of the nodes that try at once, one gets each event.
 */
const TAKE_OVER = `
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local entries = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[3])
local moved = {}
for _, entry in ipairs(entries) do
  local id = redis.call('XADD', KEYS[3], '*', unpack(entry[2]))
  redis.call('XDEL', KEYS[2], entry[1])
  moved[#moved + 1] = {id, entry[2]}
end
if #moved > 0 then redis.call('SADD', KEYS[4], ARGV[2]) end
if redis.call('XLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[4], ARGV[1])
end
return moved
`

export interface BucketScripts {
  readonly writeObject: Script
  readonly deleteBucket: Script
  readonly putAppBucket: Script
  readonly listObjects: Script
  readonly takeOver: Script
}

export function defineBucketScripts (client: Redis): BucketScripts {
  return {
    writeObject: defineScript(client, 'heraldBucketWriteObject', 5, WRITE_OBJECT),
    deleteBucket: defineScript(client, 'heraldBucketDelete', 6, DELETE_BUCKET),
    putAppBucket: defineScript(client, 'heraldBucketPutApp', 2, PUT_APP_BUCKET),
    listObjects: defineScript(client, 'heraldBucketList', 2, LIST_OBJECTS),
    takeOver: defineScript(client, 'heraldBucketTakeOver', 4, TAKE_OVER),
  }
}
