import type { Logger } from 'pino'
import type { AppBucketAcl, AppBucketDirectory } from '../acl/index.js'
import type { JsonObject } from './merge-patch.js'
import type { Preconditions } from './preconditions.js'
import type { BucketScope } from './scope.js'

// The bucket store's contract: what the HTTP routes and the ACL use, and what
// each implementation (level-store.ts; Redis: store/redis/buckets.ts) provides.

/** Where bucket events go: the broker's publish, declared here so the store does not import the broker. */
export interface EventPublisher {
  publish (message: { topic: string, payload: Buffer, qos: 0 | 1, retain: boolean }): Promise<void>
}

/** One stored object, as the API returns it. */
export interface BucketObject {
  readonly id: string
  /** 1 on creation, +1 on every write. */
  readonly version: number
  readonly createdAt: string
  readonly modifiedAt: string
  /** The `sub` of the caller who created it. */
  readonly owner: string | null
  readonly body: JsonObject
}

/** An app-scope bucket: created by an admin, with its own ACL. */
export interface AppBucket {
  readonly name: string
  readonly acl: AppBucketAcl
  readonly createdAt: string
  readonly updatedAt: string
  /** Set once the bucket was deleted: its ACL stays so queued BUCKET_DELETED events still reach devices. */
  readonly deletedAt: string | null
}

export interface BucketLimits {
  /** Largest object body (its JSON, UTF-8). */
  readonly maxObjectBytes: number
  /** Events carry the object body when its JSON is at most this long. */
  readonly eventBodyLimitBytes: number
}

export interface ObjectPage {
  readonly objects: BucketObject[]
  /** The `after` cursor of the next page; null on the last one. */
  readonly next: string | null
}

export interface WriteOptions extends Preconditions {
  /** The `sub` of the caller: the event's `sender`, a new object's `owner`. */
  readonly sender: string | null
}

/**
 * Buckets of JSON objects whose changes are published as events.
 *
 * Every write and its event are one logical step: the object change and a
 * pending-event record are stored in one atomic step, then the event is
 * published (QoS1: it is in every persistent subscriber's queue when publish
 * resolves), then the pending record is removed. Pending records a crash (or
 * a failed publish) left behind are published later, so a write that
 * happened always has its event (perhaps twice: events carry an `eventId`),
 * and no event exists for a write that did not. When the publish fails, the
 * write stands and the call rejects with the publish's error.
 *
 * An object's events are published in version order by the node that wrote
 * them (with several nodes on Redis, events of one object written on
 * different nodes may arrive out of order: their `version` says which is
 * newer). `If-Match` / `If-None-Match` are checked in the same atomic step
 * as the write.
 */
export interface BucketStore extends AppBucketDirectory {
  /** Publishes the events a crash left pending, then accepts writes. */
  start (broker: EventPublisher, logger: Logger): Promise<void>
  /** Stops background work, after the publishes in flight (the LevelDB store has none). */
  stop (): Promise<void>
  getObject (scope: BucketScope, bucket: string, id: string): Promise<BucketObject | undefined>
  /** Objects in id order, those after `after`. */
  listObjects (scope: BucketScope, bucket: string, options: { limit: number, after?: string }): Promise<ObjectPage>
  /** Creates an object; a given id that exists is ALREADY_EXISTS. */
  createObject (scope: BucketScope, bucket: string, id: string | undefined, body: JsonObject, options: WriteOptions): Promise<BucketObject>
  /** Creates or replaces an object. */
  putObject (scope: BucketScope, bucket: string, id: string, body: JsonObject, options: WriteOptions): Promise<{ object: BucketObject, created: boolean }>
  /** Applies an RFC 7396 merge patch to an existing object. */
  patchObject (scope: BucketScope, bucket: string, id: string, patch: JsonObject, options: WriteOptions): Promise<BucketObject>
  deleteObject (scope: BucketScope, bucket: string, id: string, options: WriteOptions): Promise<void>
  /**
   * The names of the scope's buckets that hold objects, in byte order, those
   * after `after` (an operator browsing a user's or group's buckets: they
   * exist only through their objects).
   */
  listBuckets (scope: BucketScope, options: { limit: number, after?: string }): Promise<{ names: string[], next: string | null }>
  /** Drops every object of the bucket (and an app bucket's definition); resolves the number of objects dropped. */
  deleteBucket (scope: BucketScope, bucket: string, options: { sender: string | null }): Promise<number>

  /** Existing (not deleted) app buckets. */
  getAppBucket (name: string): AppBucket | undefined
  listAppBuckets (): AppBucket[]
  /** Creates or replaces an app bucket's ACL; with `onlyIfAbsent`, resolves false when it exists. */
  putAppBucket (name: string, acl: AppBucketAcl, options?: { onlyIfAbsent?: boolean }): Promise<{ bucket: AppBucket, created: boolean } | undefined>
  /** Events written but not yet published, by any node (tests, metrics). */
  pendingEvents (): Promise<number>
}
