import type { AppTopicAcl, AppTopicDirectory } from '../acl/index.js'
import type { Database } from './open-store.js'

export interface AppTopic {
  readonly name: string
  readonly acl: AppTopicAcl
  readonly createdAt: string
  readonly updatedAt: string
}

/**
 * App-scope topics, durable in LevelDB and mirrored in memory: the MQTT ACL
 * reads them on every SUBSCRIBE and delivery (`get` is synchronous), and a
 * change is visible to live connections as soon as `put`/`delete` resolve.
 */
export interface AppTopicStore extends AppTopicDirectory {
  list (): AppTopic[]
  getTopic (name: string): AppTopic | undefined
  /** Creates or replaces; with `onlyIfAbsent`, resolves false (and writes nothing) when the topic exists. */
  put (topic: AppTopic, options?: { onlyIfAbsent?: boolean }): Promise<boolean>
  delete (name: string): Promise<boolean>
}

export async function openAppTopicStore (db: Database): Promise<AppTopicStore> {
  const stored = db.sublevel<string, AppTopic>('app-topics', { valueEncoding: 'json' })
  const topics = new Map<string, AppTopic>()
  for await (const [name, topic] of stored.iterator()) topics.set(name, topic)

  return {
    get: (name) => topics.get(name)?.acl,
    getTopic: (name) => topics.get(name),
    list: () => [...topics.values()].sort((a, b) => a.name.localeCompare(b.name)),
    async put (topic, options = {}) {
      const previous = topics.get(topic.name)
      if (previous !== undefined && options.onlyIfAbsent === true) return false
      // the map changes before the write, so a concurrent create-only call already sees the topic
      topics.set(topic.name, topic)
      try {
        await stored.put(topic.name, topic)
      } catch (err) {
        if (previous === undefined) topics.delete(topic.name)
        else topics.set(topic.name, previous)
        throw err
      }
      return true
    },
    async delete (name) {
      if (!topics.has(name)) return false
      await stored.del(name)
      topics.delete(name)
      return true
    },
  }
}
