import type { AclEntry } from './app-topics.js'

/**
 * App-scope buckets (`/v1/app/buckets/{name}`) exist once an admin creates
 * them, each with its own ACL, like app topics. Reading the bucket's objects
 * and subscribing to its events topic (`app/buckets/{name}/events`) follow
 * `read`; writing objects follows `write`.
 */
export interface AppBucketAcl {
  readonly read: readonly AclEntry[]
  readonly write: readonly AclEntry[]
}

export interface AppBucketDirectory {
  /** The ACL of an app bucket; also of a deleted one, so its last events still reach devices. */
  bucketAcl (name: string): AppBucketAcl | undefined
}

/** No app buckets. */
export const noAppBuckets: AppBucketDirectory = { bucketAcl: () => undefined }
