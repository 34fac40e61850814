/**
 * Where a bucket lives. The scopes follow the topic namespace (README "Topics
 * and who may use them"): a user's buckets under `users/{uid}`, a group's under
 * `groups/{gid}`, the app's under `app`.
 */
export type BucketScope =
  | { readonly kind: 'app' }
  | { readonly kind: 'user', readonly id: string }
  | { readonly kind: 'group', readonly id: string }

/** `app`, `users/alice`, `groups/ops`: the topic prefix, and the `scope` of every event. */
export function scopePath (scope: BucketScope): string {
  switch (scope.kind) {
    case 'app': return 'app'
    case 'user': return `users/${scope.id}`
    case 'group': return `groups/${scope.id}`
  }
}

/** The topic Herald publishes a bucket's change events on. */
export function bucketEventsTopic (scope: BucketScope, bucket: string): string {
  return `${scopePath(scope)}/buckets/${bucket}/events`
}

/**
 * The bucket name of a topic shaped like an events topic
 * (`app/buckets/{b}/events`, `users/{uid}/buckets/{b}/events`,
 * `groups/{gid}/buckets/{b}/events`), whatever its levels hold; undefined otherwise.
 */
export function eventsTopicBucket (topic: string): { scope: 'app' | 'users' | 'groups', bucket: string } | undefined {
  // asked for every publish: most topics are not events topics, and tell it by their end
  if (!topic.endsWith('/events')) return undefined
  const levels = topic.split('/')
  const [first] = levels
  if (first === 'app' && levels.length === 4 && levels[1] === 'buckets' && levels[3] === 'events') {
    return { scope: 'app', bucket: levels[2] as string }
  }
  if ((first === 'users' || first === 'groups') && levels.length === 5 && levels[2] === 'buckets' && levels[4] === 'events') {
    return { scope: first, bucket: levels[3] as string }
  }
  return undefined
}
