import { randomUUID } from 'node:crypto'
import type { JsonObject } from './merge-patch.js'
import { bucketEventsTopic, scopePath, type BucketScope } from './scope.js'

export type BucketEventType = 'DATA_OBJECT_CREATED' | 'DATA_OBJECT_UPDATED' | 'DATA_OBJECT_DELETED' | 'BUCKET_DELETED'

/** The JSON body of a change event (README "Buckets"). */
export interface BucketEvent {
  /** Unique per change; the same when the event is published again after a crash, so devices can drop repeats. */
  readonly eventId: string
  readonly type: BucketEventType
  /** `app`, `users/{uid}` or `groups/{gid}`. */
  readonly scope: string
  readonly bucket: string
  /** null for BUCKET_DELETED. */
  readonly objectId: string | null
  /** The version this change produced; null for BUCKET_DELETED. */
  readonly version: number | null
  readonly modifiedAt: string
  /** The `sub` of the caller who made the change. */
  readonly sender: string | null
  /** The object body after the change, when its JSON fits `buckets.eventBodyLimitBytes`. */
  readonly body?: JsonObject
  /** True when the object has a body that did not fit: fetch the object. */
  readonly bodyOmitted?: true
}

/** An event and the topic it goes to: what the store keeps until it is published. */
export interface PendingEvent {
  readonly topic: string
  readonly event: BucketEvent
}

export interface EventInput {
  readonly type: BucketEventType
  readonly scope: BucketScope
  readonly bucket: string
  readonly objectId: string | null
  readonly version: number | null
  readonly modifiedAt: string
  readonly sender: string | null
  /** The body after the change (none for deletions). */
  readonly body?: JsonObject
  /** Its JSON length in bytes, when known. */
  readonly bodyBytes?: number
}

export function buildEvent (input: EventInput, eventBodyLimitBytes: number): PendingEvent {
  const event: BucketEvent = {
    eventId: randomUUID(),
    type: input.type,
    scope: scopePath(input.scope),
    bucket: input.bucket,
    objectId: input.objectId,
    version: input.version,
    modifiedAt: input.modifiedAt,
    sender: input.sender,
  }
  if (input.body === undefined) return { topic: bucketEventsTopic(input.scope, input.bucket), event }
  const bytes = input.bodyBytes ?? jsonBytes(input.body)
  const withBody: BucketEvent = bytes <= eventBodyLimitBytes ? { ...event, body: input.body } : { ...event, bodyOmitted: true }
  return { topic: bucketEventsTopic(input.scope, input.bucket), event: withBody }
}

export function jsonBytes (value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8')
}
