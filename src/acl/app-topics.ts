/**
 * App-scope topics (`app/{name}`) exist only once created through the HTTP API,
 * each with its own ACL. The ACL reads them through this interface, so a change
 * applies to live connections at once.
 */

/** `authenticated`, `user:<id>`, `group:<id>` or `role:<role>`. */
export type AclEntry = string

export interface AppTopicAcl {
  readonly subscribe: readonly AclEntry[]
  readonly publish: readonly AclEntry[]
}

export interface AppTopicDirectory {
  get (name: string): AppTopicAcl | undefined
}

/** No app topics: what the broker has until the HTTP API creates some. */
export const noAppTopics: AppTopicDirectory = { get: () => undefined }
