import type { AbstractLevel } from 'abstract-level'
import type { Logger } from 'pino'
import type { AppBucketAcl } from '../acl/index.js'
import { HeraldError } from '../errors/index.js'
import { appBucketWrite, bucketDeleted, isLive, liveAppBuckets, objectDeleted, objectWrite } from './changes.js'
import type { PendingEvent } from './events.js'
import { KeyedLocks } from './locks.js'
import { mergePatch, type JsonObject } from './merge-patch.js'
import { generateObjectId } from './names.js'
import { checkPreconditions } from './preconditions.js'
import { scopePath, type BucketScope } from './scope.js'
import type { AppBucket, BucketLimits, BucketObject, BucketStore, EventPublisher, WriteOptions } from './store.js'

/** The database the store keeps its sublevels in (store/open-store.ts's Database, named by its library type: src/buckets does not import src/store). */
type Database = AbstractLevel<string | Buffer | Uint8Array, string, unknown>

type Batch = ReturnType<Database['batch']>

// cannot occur in a user or group id (auth/claims.ts), a bucket name or an object id
const SEP = '\u0000'

const bucketKey = (scope: BucketScope, bucket: string): string => `${scopePath(scope)}${SEP}${bucket}`
const objectKey = (scope: BucketScope, bucket: string, id: string): string => `${bucketKey(scope, bucket)}${SEP}${id}`

function openTables (db: Database) {
  return {
    objects: db.sublevel<string, BucketObject>('bucket-objects', { valueEncoding: 'json' }),
    pending: db.sublevel<string, PendingEvent>('bucket-events', { valueEncoding: 'json' }),
    appBucketsDb: db.sublevel<string, AppBucket>('app-buckets', { valueEncoding: 'json' }),
  }
}

/**
 * The store's state and the steps its writes share; `openBucketStore` is its API.
 *
 * The object change and a pending-event record go into LevelDB in one batch,
 * then the event is published, then the pending record is removed; `start()`
 * publishes every record a crash left behind. Writes to one object hold its
 * lock until their event is out, so an object's events go out in version
 * order; a bucket delete holds the bucket's lock alone, after the object
 * writes in flight.
 */
class BucketState {
  readonly objects
  readonly pending
  readonly appBucketsDb
  // the MQTT ACL reads app bucket ACLs on every SUBSCRIBE and delivery: kept in memory
  readonly appBuckets = new Map<string, AppBucket>()
  readonly locks = new KeyedLocks()
  private broker: EventPublisher | undefined
  private log: Logger | undefined
  // pending-event keys sort in write order; they only need to be unique and
  // increasing within a process, and later than those a previous one left
  private lastSeq = 0
  private readonly db: Database
  private readonly limits: BucketLimits

  constructor (db: Database, limits: BucketLimits) {
    this.db = db
    this.limits = limits
    const tables = openTables(db)
    this.objects = tables.objects
    this.pending = tables.pending
    this.appBucketsDb = tables.appBucketsDb
  }

  async load (): Promise<void> {
    for await (const [name, bucket] of this.appBucketsDb.iterator()) this.appBuckets.set(name, bucket)
    for await (const key of this.pending.keys({ reverse: true, limit: 1 })) this.lastSeq = Number(key)
  }

  private nextKey (): string {
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000)
    return String(this.lastSeq).padStart(17, '0')
  }

  /** Publishes the events a crash left pending, then accepts writes. */
  async start (port: EventPublisher, logger: Logger): Promise<void> {
    const log = this.log = logger.child({ component: 'buckets' })
    this.broker = port
    let replayed = 0
    // in key order: an object's events go out in the order they were written
    for await (const [key, record] of this.pending.iterator()) {
      try {
        await this.publish(key, record)
        replayed++
      } catch (err) {
        log.error({ err, topic: record.topic, eventId: record.event.eventId }, 'pending bucket event not published; kept for the next start')
      }
    }
    if (replayed > 0) log.info({ replayed }, 'published bucket events left pending by the previous run')
  }

  /** Object writes share their bucket's lock and hold their object's; a bucket delete holds the bucket's alone. */
  async objectWrite<T> (scope: BucketScope, bucket: string, id: string, step: () => Promise<T>): Promise<T> {
    return await this.locks.shared(bucketKey(scope, bucket), async () => await this.locks.exclusive(objectKey(scope, bucket, id), async () => {
      if (scope.kind === 'app' && !isLive(this.appBuckets.get(bucket))) throw new HeraldError('NOT_FOUND', 'no such bucket')
      return await step()
    }))
  }

  private async publish (key: string, record: PendingEvent): Promise<void> {
    if (this.broker === undefined) throw new HeraldError('SERVER_UNAVAILABLE', 'the bucket store is not started')
    await this.broker.publish({ topic: record.topic, payload: Buffer.from(JSON.stringify(record.event)), qos: 1, retain: false })
    await this.pending.del(key)
  }

  /** The change and its pending event in one batch; then the event goes out. Never the other way round. */
  async commit (change: (batch: Batch) => void, record: PendingEvent, written?: () => void): Promise<void> {
    if (this.broker === undefined) throw new HeraldError('SERVER_UNAVAILABLE', 'the bucket store is not started')
    const key = this.nextKey()
    const batch = this.db.batch()
    change(batch)
    batch.put(key, record, { sublevel: this.pending })
    await batch.write()
    written?.()
    try {
      await this.publish(key, record)
    } catch (err) {
      // the write stands; the event stays pending and is published at the next start
      this.log?.error({ err, topic: record.topic, eventId: record.event.eventId }, 'bucket event not published; kept for the next start')
      throw err
    }
  }

  async write (scope: BucketScope, bucket: string, id: string, body: JsonObject, current: BucketObject | undefined, sender: string | null): Promise<BucketObject> {
    const { object, record } = objectWrite(scope, bucket, id, body, current, sender, this.limits)
    await this.commit((batch) => batch.put(objectKey(scope, bucket, id), object, { sublevel: this.objects }), record)
    return object
  }

  async deleteObject (scope: BucketScope, bucket: string, id: string, options: WriteOptions): Promise<void> {
    const current = await this.objects.get(objectKey(scope, bucket, id))
    if (current === undefined) throw new HeraldError('NOT_FOUND', 'no such object')
    checkPreconditions(current.version, options)
    const record = objectDeleted(scope, bucket, id, current.version, options.sender, this.limits)
    await this.commit((batch) => batch.del(objectKey(scope, bucket, id), { sublevel: this.objects }), record)
  }

  /** Under the bucket's exclusive lock. */
  async deleteBucket (scope: BucketScope, bucket: string, sender: string | null): Promise<number> {
    const appBucket = scope.kind === 'app' ? this.appBuckets.get(bucket) : undefined
    if (scope.kind === 'app' && !isLive(appBucket)) throw new HeraldError('NOT_FOUND', 'no such bucket')
    const keys: string[] = []
    for await (const key of this.objects.keys({ gt: `${bucketKey(scope, bucket)}${SEP}`, lt: `${bucketKey(scope, bucket)}\u0001` })) keys.push(key)
    const { record, tombstone } = bucketDeleted(scope, bucket, appBucket, sender, this.limits)
    await this.commit((batch) => {
      for (const key of keys) batch.del(key, { sublevel: this.objects })
      if (tombstone !== undefined) batch.put(bucket, tombstone, { sublevel: this.appBucketsDb })
    }, record, () => { if (tombstone !== undefined) this.appBuckets.set(bucket, tombstone) })
    return keys.length
  }

  /** Under the bucket's exclusive lock. */
  async putAppBucket (name: string, acl: AppBucketAcl, options: { onlyIfAbsent?: boolean }): Promise<{ bucket: AppBucket, created: boolean } | undefined> {
    const written = appBucketWrite(name, acl, this.appBuckets.get(name), options.onlyIfAbsent === true)
    if (written === undefined) return undefined
    const { bucket } = written
    await this.appBucketsDb.put(bucket.name, bucket)
    this.appBuckets.set(bucket.name, bucket)
    return written
  }
}

export async function openBucketStore (db: Database, limits: BucketLimits): Promise<BucketStore> {
  const state = new BucketState(db, limits)
  await state.load()
  const { objects, pending, appBuckets, locks } = state

  return {
    start: async (port, logger) => { await state.start(port, logger) },

    getObject: async (scope, bucket, id) => await objects.get(objectKey(scope, bucket, id)),

    async listObjects (scope, bucket, { limit, after }) {
      const prefix = `${bucketKey(scope, bucket)}${SEP}`
      const range = after === undefined ? { gte: prefix } : { gt: `${prefix}${after}` }
      const found: BucketObject[] = []
      for await (const object of objects.values({ ...range, lt: `${bucketKey(scope, bucket)}\u0001`, limit: limit + 1 })) found.push(object)
      const more = found.length > limit
      const page = more ? found.slice(0, limit) : found
      return { objects: page, next: more ? (page[page.length - 1]?.id ?? null) : null }
    },

    listBuckets: async (scope, page) => await bucketNames(objects, scope, page),

    async createObject (scope, bucket, givenId, body, options) {
      const id = givenId ?? generateObjectId()
      return await state.objectWrite(scope, bucket, id, async () => {
        if (await objects.get(objectKey(scope, bucket, id)) !== undefined) throw new HeraldError('ALREADY_EXISTS', 'an object with this id exists')
        return await state.write(scope, bucket, id, body, undefined, options.sender)
      })
    },

    putObject: async (scope, bucket, id, body, options) => await state.objectWrite(scope, bucket, id, async () => {
      const current = await objects.get(objectKey(scope, bucket, id))
      checkPreconditions(current?.version, options)
      return { object: await state.write(scope, bucket, id, body, current, options.sender), created: current === undefined }
    }),

    patchObject: async (scope, bucket, id, patch, options) => await state.objectWrite(scope, bucket, id, async () => {
      const current = await objects.get(objectKey(scope, bucket, id))
      if (current === undefined) throw new HeraldError('NOT_FOUND', 'no such object')
      checkPreconditions(current.version, options)
      // a patch that is an object merges into an object: the result is one too
      return await state.write(scope, bucket, id, mergePatch(current.body, patch) as JsonObject, current, options.sender)
    }),

    deleteObject: async (scope, bucket, id, options) => await state.objectWrite(scope, bucket, id, async () => { await state.deleteObject(scope, bucket, id, options) }),

    deleteBucket: async (scope, bucket, { sender }) => await locks.exclusive(bucketKey(scope, bucket), async () => await state.deleteBucket(scope, bucket, sender)),

    bucketAcl: (name) => appBuckets.get(name)?.acl,

    getAppBucket (name) {
      const bucket = appBuckets.get(name)
      return isLive(bucket) ? bucket : undefined
    },

    listAppBuckets: () => liveAppBuckets(appBuckets.values()),

    putAppBucket: async (name, acl, options = {}) => await locks.exclusive(bucketKey({ kind: 'app' }, name), async () => await state.putAppBucket(name, acl, options)),

    // nothing runs in the background
    stop: async () => {},

    async pendingEvents () {
      let count = 0
      for await (const _key of pending.keys()) count++
      return count
    },
  }
}

/** A page of a scope's bucket names, one seek per bucket: the keys of a bucket's objects are skipped, not read. */
async function bucketNames (objects: BucketState['objects'], scope: BucketScope, { limit, after }: { limit: number, after?: string | undefined }): Promise<{ names: string[], next: string | null }> {
  const scopeStart = `${scopePath(scope)}${SEP}`
  const scopeEnd = `${scopePath(scope)}\u0001`
  const names: string[] = []
  let from = after === undefined ? scopeStart : `${scopeStart}${after}\u0001`
  while (names.length <= limit) {
    let key: string | undefined
    for await (const found of objects.keys({ gte: from, lt: scopeEnd, limit: 1 })) key = found
    if (key === undefined) break
    const name = key.slice(scopeStart.length, key.indexOf(SEP, scopeStart.length))
    names.push(name)
    from = `${scopeStart}${name}\u0001`
  }
  const more = names.length > limit
  const page = more ? names.slice(0, limit) : names
  return { names: page, next: more ? (page[page.length - 1] ?? null) : null }
}
