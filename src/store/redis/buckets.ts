import type { Logger } from 'pino'
import type { AppBucketAcl } from '../../acl/index.js'
import {
  appBucketWrite, bucketDeleted, checkPreconditions, generateObjectId, isLive, KeyedLocks, liveAppBuckets, mergePatch, objectDeleted, objectWrite,
  type AppBucket, type BucketLimits, type BucketObject, type BucketScope, type BucketStore, type JsonObject, type PendingEvent,
} from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import { PendingEvents } from './bucket-events.js'
import { bucketKeys, CONFLICT, defineBucketScripts, NO_BUCKET, type BucketScripts } from './bucket-scripts.js'
import type { RedisConnection } from './connection.js'
import { changeBody, openMirror, type RedisMirror } from './mirror.js'

export interface RedisBucketStoreOptions {
  /** This node's name (`cluster.nodeId`): its pending events are kept under it. */
  readonly node: string
  /** A node silent for this long has its pending events taken over by another (default 10 s). */
  readonly leaseMs?: number
  /** Problems of the app bucket mirror (a failed reload, retried). */
  readonly onError?: (err: unknown) => void
}

/** The Redis bucket store, plus what tests and the cluster wiring may reach. */
export interface RedisBucketStore extends BucketStore {
  readonly node: string
  /** The app bucket directory as this node mirrors it. */
  readonly directory: RedisMirror<AppBucket>
  /** Takes over the pending events of `node` if its lease expired (the sweep does it too; a cluster-wide node lease may call it sooner). */
  takeOver (node: string): Promise<number>
}

/** Of writers racing on one object, each try loses to one that won: past this many, the write gives up. */
const MAX_TRIES = 50

/** What a write decided once it read the current object: the new value (null: deleted), its event, what it resolves. */
interface Plan<T> {
  readonly value: BucketObject | null
  readonly record: PendingEvent
  readonly result: T
}

/**
 * Redis' own errors (unreachable, timed out) as a 503 with a stable code;
 * Herald's pass through. A write whose answer was lost may still have been
 * made: then its event goes out too (bucket-events.ts).
 */
async function redisStep<T> (step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (err) {
    if (err instanceof HeraldError) throw err
    throw new HeraldError('SERVER_UNAVAILABLE', 'the shared store (Redis) did not answer; retry later', { cause: err })
  }
}

/**
 * The bucket store of a cluster: the same contract as the LevelDB store
 * (src/buckets/store.ts), shared by every node through Redis.
 *
 * Every write is read, decide, compare-and-set: the change, the
 * `If-Match`/`If-None-Match` check (as "the object is still what was read")
 * and the pending event are one Lua script (bucket-scripts.ts); a writer
 * whose read is stale reads again. Within a node, writes to one object still
 * take turns (KeyedLocks), so its events go out in version order and
 * contention stays between nodes. Pending events: bucket-events.ts. The app
 * bucket directory, which the ACL reads synchronously, is mirrored on every
 * node (mirror.ts); a write resolves once this node's mirror has it, and
 * other nodes follow within a pub/sub round trip.
 */
class RedisBuckets {
  readonly locks = new KeyedLocks()
  readonly #conn: RedisConnection
  readonly #limits: BucketLimits
  readonly #scripts: BucketScripts
  readonly events: PendingEvents
  readonly directory: RedisMirror<AppBucket>
  #started = false

  constructor (conn: RedisConnection, limits: BucketLimits, scripts: BucketScripts, events: PendingEvents, directory: RedisMirror<AppBucket>) {
    this.#conn = conn
    this.#limits = limits
    this.#scripts = scripts
    this.events = events
    this.directory = directory
  }

  async start (publisher: Parameters<BucketStore['start']>[0], logger: Logger): Promise<void> {
    await this.events.start(publisher, logger.child({ component: 'buckets', node: this.events.node }))
    this.#started = true
  }

  async stop (): Promise<void> {
    this.#started = false
    await this.events.stop()
    await this.directory.close()
  }

  async getObject (scope: BucketScope, bucket: string, id: string): Promise<BucketObject | undefined> {
    const raw = await redisStep(async () => await this.#conn.client.hget(bucketKeys.objects(scope, bucket), id))
    return raw === null ? undefined : JSON.parse(raw) as BucketObject
  }

  async listObjects (scope: BucketScope, bucket: string, limit: number, after: string | undefined): Promise<{ objects: BucketObject[], next: string | null }> {
    const keys = [bucketKeys.ids(scope, bucket), bucketKeys.objects(scope, bucket)]
    const raw = await redisStep(async () => await this.#scripts.listObjects(keys, [after === undefined ? '-' : `(${after}`, limit + 1]) as Array<string | null>)
    const found = raw.filter((value): value is string => value !== null).map((value) => JSON.parse(value) as BucketObject)
    const more = found.length > limit
    const page = more ? found.slice(0, limit) : found
    return { objects: page, next: more ? (page[page.length - 1]?.id ?? null) : null }
  }

  /** SCAN for the scope's `ids` sorted sets (Redis drops an empty one, so each is a bucket with objects). */
  async listBuckets (scope: BucketScope, limit: number, after: string | undefined): Promise<{ names: string[], next: string | null }> {
    const { client, keyPrefix } = this.#conn
    // SCAN's MATCH is not prefixed by ioredis; its answers carry the prefix
    const start = `${keyPrefix}${bucketKeys.ids(scope, '')}`
    const match = `${start.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`
    const names = new Set<string>()
    let cursor = '0'
    do {
      const [nextCursor, keys] = await redisStep(async () => await client.scan(cursor, 'MATCH', match, 'COUNT', 1000))
      for (const key of keys) names.add(key.slice(start.length))
      cursor = nextCursor
    } while (cursor !== '0')
    const sorted = [...names].filter((name) => after === undefined || name > after).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const page = sorted.slice(0, limit)
    return { names: page, next: sorted.length > limit ? (page[page.length - 1] ?? null) : null }
  }

  /**
   * One object write: under this node's locks, read, `plan`, compare-and-set
   * with the pending event, then publish it. A plan may throw (preconditions).
   */
  async writeObject<T> (scope: BucketScope, bucket: string, id: string, plan: (current: BucketObject | undefined) => Plan<T>): Promise<T> {
    const objects = bucketKeys.objects(scope, bucket)
    return await this.locks.shared(objects, async () => await this.locks.exclusive(`${objects}\n${id}`, async () => {
      this.#checkStarted()
      if (scope.kind === 'app' && !isLive(this.directory.get(bucket))) throw new HeraldError('NOT_FOUND', 'no such bucket')
      const keys = [objects, bucketKeys.ids(scope, bucket), bucketKeys.app, this.events.stream, bucketKeys.nodes]
      for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
        const raw = await redisStep(async () => await this.#conn.client.hget(objects, id))
        const { value, record, result } = plan(raw === null ? undefined : JSON.parse(raw) as BucketObject)
        const event = JSON.stringify(record.event)
        const args = [id, raw ?? '', value === null ? '' : JSON.stringify(value), scope.kind === 'app' ? bucket : '', record.topic, event, this.events.node]
        const answer = await redisStep(async () => await this.#scripts.writeObject(keys, args) as string | number)
        if (answer === CONFLICT) continue
        if (answer === NO_BUCKET) throw new HeraldError('NOT_FOUND', 'no such bucket')
        await this.events.publishWritten(String(answer), record.topic, event)
        return result
      }
      throw new HeraldError('SERVER_UNAVAILABLE', 'the object changed under every try; retry later')
    }))
  }

  /** Under the bucket's exclusive lock on this node; other nodes' writes are ordered by Redis. */
  async deleteBucket (scope: BucketScope, bucket: string, sender: string | null): Promise<number> {
    const objects = bucketKeys.objects(scope, bucket)
    return await this.locks.exclusive(objects, async () => {
      this.#checkStarted()
      const keys = [objects, bucketKeys.ids(scope, bucket), bucketKeys.app, bucketKeys.appSeq, this.events.stream, bucketKeys.nodes]
      for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
        const raw = scope.kind === 'app' ? await redisStep(async () => await this.#conn.client.hget(bucketKeys.app, bucket)) : null
        const appBucket = raw === null ? undefined : JSON.parse(raw) as AppBucket
        if (scope.kind === 'app' && !isLive(appBucket)) throw new HeraldError('NOT_FOUND', 'no such bucket')
        const { record, tombstone } = bucketDeleted(scope, bucket, appBucket, sender, this.#limits)
        const value = tombstone === undefined ? '' : JSON.stringify(tombstone)
        const event = JSON.stringify(record.event)
        const args = [raw === null ? '' : bucket, raw ?? '', value, this.directory.channel, changeBody([[bucket, value]]), record.topic, event, this.events.node]
        const answer = await redisStep(async () => await this.#scripts.deleteBucket(keys, args) as number | [number, number, string])
        if (typeof answer === 'number') continue // CONFLICT
        const [dropped, seq, entry] = answer
        if (seq > 0) await this.directory.caughtUp(seq)
        await this.events.publishWritten(entry, record.topic, event)
        return dropped
      }
      throw new HeraldError('SERVER_UNAVAILABLE', 'the bucket changed under every try; retry later')
    })
  }

  async putAppBucket (name: string, acl: AppBucketAcl, onlyIfAbsent: boolean): Promise<{ bucket: AppBucket, created: boolean } | undefined> {
    return await this.locks.exclusive(bucketKeys.objects({ kind: 'app' }, name), async () => {
      for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
        const raw = await redisStep(async () => await this.#conn.client.hget(bucketKeys.app, name))
        const written = appBucketWrite(name, acl, raw === null ? undefined : JSON.parse(raw) as AppBucket, onlyIfAbsent)
        if (written === undefined) return undefined
        const value = JSON.stringify(written.bucket)
        const args = [name, raw ?? '', value, this.directory.channel, changeBody([[name, value]])]
        const seq = await redisStep(async () => await this.#scripts.putAppBucket([bucketKeys.app, bucketKeys.appSeq], args) as number)
        if (seq === CONFLICT) continue
        await this.directory.caughtUp(seq)
        return written
      }
      throw new HeraldError('SERVER_UNAVAILABLE', 'the bucket changed under every try; retry later')
    })
  }

  #checkStarted (): void {
    if (!this.#started) throw new HeraldError('SERVER_UNAVAILABLE', 'the bucket store is not started')
  }
}

/** Opens the store on a cluster's Redis: loads the app bucket mirror; `start()` then publishes what this node left pending. */
export async function openRedisBucketStore (conn: RedisConnection, limits: BucketLimits, options: RedisBucketStoreOptions): Promise<RedisBucketStore> {
  const scripts = defineBucketScripts(conn.client)
  const events = new PendingEvents(conn, scripts, { node: options.node, leaseMs: options.leaseMs ?? 10_000 })
  const directory = await openMirror<AppBucket>(conn, {
    hash: bucketKeys.app,
    seqKey: bucketKeys.appSeq,
    channel: 'buckets-changes',
    decode: (raw) => JSON.parse(raw) as AppBucket,
    ...(options.onError !== undefined && { onError: options.onError }),
  })
  const store = new RedisBuckets(conn, limits, scripts, events, directory)

  return {
    node: options.node,
    directory,
    takeOver: async (node) => await events.takeOver(node),
    start: async (publisher, logger) => { await store.start(publisher, logger) },
    stop: async () => { await store.stop() },

    getObject: async (scope, bucket, id) => await store.getObject(scope, bucket, id),
    listObjects: async (scope, bucket, { limit, after }) => await store.listObjects(scope, bucket, limit, after),
    listBuckets: async (scope, { limit, after }) => await store.listBuckets(scope, limit, after),

    async createObject (scope, bucket, givenId, body, { sender }) {
      const id = givenId ?? generateObjectId()
      return await store.writeObject(scope, bucket, id, (current) => {
        if (current !== undefined) throw new HeraldError('ALREADY_EXISTS', 'an object with this id exists')
        const { object, record } = objectWrite(scope, bucket, id, body, undefined, sender, limits)
        return { value: object, record, result: object }
      })
    },

    putObject: async (scope, bucket, id, body, options) => await store.writeObject(scope, bucket, id, (current) => {
      checkPreconditions(current?.version, options)
      const { object, record } = objectWrite(scope, bucket, id, body, current, options.sender, limits)
      return { value: object, record, result: { object, created: current === undefined } }
    }),

    patchObject: async (scope, bucket, id, patch, options) => await store.writeObject(scope, bucket, id, (current) => {
      if (current === undefined) throw new HeraldError('NOT_FOUND', 'no such object')
      checkPreconditions(current.version, options)
      // a patch that is an object merges into an object: the result is one too
      const { object, record } = objectWrite(scope, bucket, id, mergePatch(current.body, patch) as JsonObject, current, options.sender, limits)
      return { value: object, record, result: object }
    }),

    deleteObject: async (scope, bucket, id, options) => await store.writeObject(scope, bucket, id, (current) => {
      if (current === undefined) throw new HeraldError('NOT_FOUND', 'no such object')
      checkPreconditions(current.version, options)
      return { value: null, record: objectDeleted(scope, bucket, id, current.version, options.sender, limits), result: undefined }
    }),

    deleteBucket: async (scope, bucket, { sender }) => await store.deleteBucket(scope, bucket, sender),

    bucketAcl: (name) => directory.get(name)?.acl,

    getAppBucket (name) {
      const bucket = directory.get(name)
      return isLive(bucket) ? bucket : undefined
    },

    listAppBuckets: () => liveAppBuckets(directory.values()),
    putAppBucket: async (name, acl, options = {}) => await store.putAppBucket(name, acl, options.onlyIfAbsent === true),
    pendingEvents: async () => await events.count(),
  }
}
