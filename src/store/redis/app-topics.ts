import type { AppTopic, AppTopicStore } from '../app-topics.js'
import type { RedisStoreOptions } from './client-owners.js'
import type { RedisConnection } from './connection.js'
import { openMirroredHash } from './mirrored-hash.js'
import type { RedisMirror } from './mirror.js'

export interface RedisAppTopicStore extends AppTopicStore {
  readonly mirror: RedisMirror<AppTopic>
  /** Stops following other nodes' changes (the connection stays open). */
  close (): Promise<void>
}

function decode (raw: string): AppTopic {
  const topic = JSON.parse(raw) as Partial<AppTopic>
  if (typeof topic.name !== 'string' || typeof topic.acl !== 'object' || topic.acl === null) throw new Error('app-topics: an unreadable topic')
  return topic as AppTopic
}

/**
 * App topics of a cluster: one Redis hash (`app-topics`, field = topic name),
 * mirrored on every node (store/redis/mirror.ts), since the MQTT ACL reads
 * them synchronously on every SUBSCRIBE and delivery. `put` with
 * `onlyIfAbsent` checks and writes in one Lua script: of nodes racing to
 * create one topic, one does. A change is in the writing node's mirror when
 * `put`/`delete` resolve, and in the other nodes' once they have its change
 * message (pub/sub; after a subscriber reconnect, once the mirror reloaded).
 */
export async function openRedisAppTopicStore (conn: RedisConnection, options: RedisStoreOptions = {}): Promise<RedisAppTopicStore> {
  const hash = await openMirroredHash<AppTopic>(conn, {
    hash: 'app-topics',
    seqKey: 'app-topics:seq',
    channel: 'app-topics-changes',
    decode,
    ...(options.onError !== undefined && { onError: options.onError }),
  })
  const { mirror } = hash
  return {
    mirror,
    get: (name) => mirror.get(name)?.acl,
    getTopic: (name) => mirror.get(name),
    list: () => [...mirror.values()].sort((a, b) => a.name.localeCompare(b.name)),
    async put (topic, options = {}) {
      const { written } = await hash.put(topic.name, JSON.stringify(topic), options.onlyIfAbsent === true)
      return written
    },
    delete: async (name) => await hash.delete(name),
    close: async () => await mirror.close(),
  }
}
