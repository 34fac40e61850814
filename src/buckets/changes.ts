import type { AppBucketAcl } from '../acl/index.js'
import { HeraldError } from '../errors/index.js'
import { buildEvent, jsonBytes, type PendingEvent } from './events.js'
import type { JsonObject } from './merge-patch.js'
import type { BucketScope } from './scope.js'
import type { AppBucket, BucketLimits, BucketObject } from './store.js'

// What a write changes and which event it publishes, decided the same way by
// every store (level-store.ts, store/redis/buckets.ts); each store only makes
// the change and its pending event one atomic step in its own storage.

/** The body's JSON length in bytes, refused over `maxObjectBytes`. */
export function checkSize (body: JsonObject, limits: BucketLimits): number {
  const bytes = jsonBytes(body)
  if (bytes > limits.maxObjectBytes) throw new HeraldError('PAYLOAD_TOO_LARGE', `the object is ${bytes} bytes; buckets.maxObjectBytes is ${limits.maxObjectBytes}`)
  return bytes
}

/** An object created (no `current`) or replaced by `body`, and its CREATED or UPDATED event. */
export function objectWrite (
  scope: BucketScope, bucket: string, id: string, body: JsonObject, current: BucketObject | undefined, sender: string | null, limits: BucketLimits
): { object: BucketObject, record: PendingEvent } {
  const bytes = checkSize(body, limits)
  const now = new Date().toISOString()
  const object: BucketObject = current === undefined
    ? { id, version: 1, createdAt: now, modifiedAt: now, owner: sender, body }
    : { ...current, version: current.version + 1, modifiedAt: now, body }
  const record = buildEvent({
    type: current === undefined ? 'DATA_OBJECT_CREATED' : 'DATA_OBJECT_UPDATED',
    scope, bucket, objectId: id, version: object.version, modifiedAt: now, sender, body, bodyBytes: bytes,
  }, limits.eventBodyLimitBytes)
  return { object, record }
}

/** The DELETED event of an object at version `current`: the deletion is version `current + 1`. */
export function objectDeleted (scope: BucketScope, bucket: string, id: string, current: number, sender: string | null, limits: BucketLimits): PendingEvent {
  return buildEvent({
    type: 'DATA_OBJECT_DELETED', scope, bucket, objectId: id, version: current + 1, modifiedAt: new Date().toISOString(), sender,
  }, limits.eventBodyLimitBytes)
}

/** A bucket's BUCKET_DELETED event and, for an app bucket, its tombstone (its ACL stays, so the event still reaches devices). */
export function bucketDeleted (
  scope: BucketScope, bucket: string, appBucket: AppBucket | undefined, sender: string | null, limits: BucketLimits
): { record: PendingEvent, tombstone: AppBucket | undefined } {
  const now = new Date().toISOString()
  const tombstone = appBucket === undefined ? undefined : { ...appBucket, updatedAt: now, deletedAt: now }
  const record = buildEvent({ type: 'BUCKET_DELETED', scope, bucket, objectId: null, version: null, modifiedAt: now, sender }, limits.eventBodyLimitBytes)
  return { record, tombstone }
}

export const isLive = (bucket: AppBucket | undefined): bucket is AppBucket => bucket !== undefined && bucket.deletedAt === null

/**
 * An app bucket created with `acl`, or `previous` with its ACL replaced (a
 * deleted one is created anew); undefined when it exists and `onlyIfAbsent`.
 */
export function appBucketWrite (
  name: string, acl: AppBucketAcl, previous: AppBucket | undefined, onlyIfAbsent: boolean
): { bucket: AppBucket, created: boolean } | undefined {
  const exists = isLive(previous)
  if (exists && onlyIfAbsent) return undefined
  const now = new Date().toISOString()
  const bucket: AppBucket = {
    name,
    acl: { read: [...acl.read], write: [...acl.write] },
    createdAt: exists ? previous.createdAt : now,
    updatedAt: now,
    deletedAt: null,
  }
  return { bucket, created: !exists }
}

/** The live app buckets of a directory, by name. */
export function liveAppBuckets (all: Iterable<AppBucket>): AppBucket[] {
  return [...all].filter(isLive).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
}
