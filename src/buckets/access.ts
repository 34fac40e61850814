import type { AppBucketAcl } from '../acl/app-buckets.js'
import { principalMatches } from '../acl/principal-match.js'
import type { Principal } from '../auth/principal.js'
import type { BucketScope } from './scope.js'

export interface BucketRights {
  /** Read objects (and, over MQTT, subscribe to the events topic). */
  readonly read: boolean
  /** Create, replace, patch, delete objects; delete the bucket. */
  readonly write: boolean
}

const none: BucketRights = { read: false, write: false }
const all: BucketRights = { read: true, write: true }

/**
 * What a principal may do with a bucket, by the rules of the topic namespace:
 * a user's buckets are the user's, a group's are its members'; services and
 * admins may use both. App buckets follow their ACL (`appAcl`, undefined when
 * the bucket does not exist); admins may do anything with an existing one.
 */
export function bucketRights (principal: Principal, scope: BucketScope, appAcl?: AppBucketAcl): BucketRights {
  if (principal.kind !== 'user') return none
  const privileged = principal.role === 'service' || principal.role === 'admin'
  switch (scope.kind) {
    case 'user': return privileged || principal.sub === scope.id ? all : none
    case 'group': return privileged || principal.groups.includes(scope.id) ? all : none
    case 'app':
      if (appAcl === undefined) return none
      if (principal.role === 'admin') return all
      return {
        read: appAcl.read.some((entry) => principalMatches(entry, principal)),
        write: appAcl.write.some((entry) => principalMatches(entry, principal)),
      }
  }
}
