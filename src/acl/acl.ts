import type { AclRuleConfig } from '../config/index.js'
import type { Grants, Principal } from '../auth/principal.js'
import { eventsTopicBucket } from '../buckets/scope.js'
import { noAppBuckets, type AppBucketDirectory } from './app-buckets.js'
import type { AppTopicDirectory } from './app-topics.js'
import { principalMatches } from './principal-match.js'
import { covers, hasWildcard } from './topic-match.js'

/** What one connected principal may do; built once per connection. */
export interface PrincipalAcl {
  /** May this principal publish to the concrete `topic`? */
  canPublish (topic: string): boolean
  /** May this principal subscribe to `filter`? Only when every topic it matches may be read. */
  canSubscribe (filter: string): boolean
  /** May a message on the concrete `topic` be delivered to this principal now? */
  canReceive (topic: string): boolean
}

export interface AclOptions {
  readonly rules: readonly AclRuleConfig[]
  readonly anonymousGrants: Grants
  readonly appTopics: AppTopicDirectory
  /** App buckets: their events topics (`app/buckets/{name}/events`) are read per the bucket's ACL. */
  readonly appBuckets?: AppBucketDirectory
}

export interface Acl {
  forPrincipal (principal: Principal): PrincipalAcl
}

interface FilterSet {
  readonly allow: readonly string[]
  readonly deny: readonly string[]
}

/**
 * The topic namespace of DESIGN.md ("MQTT topic namespace and ACL") plus
 * grants from the token's `acl` claim and from config rules. Deny filters
 * (`!filter`) win over everything; `$`-topics can never be published to.
 */
export function createAcl (options: AclOptions): Acl {
  const { appTopics } = options
  const appBuckets = options.appBuckets ?? noAppBuckets

  function appAllows (name: string | undefined, action: 'subscribe' | 'publish', principal: Principal): boolean {
    if (name === undefined || hasWildcard(name)) return false
    const acl = appTopics.get(name)
    return acl !== undefined && acl[action].some((entry) => principalMatches(entry, principal))
  }

  /** `app/buckets/{name}/events`: readable per the app bucket's `read` ACL. */
  function appBucketEventsReadable (filter: string, principal: Principal): boolean {
    const events = eventsTopicBucket(filter)
    if (events?.scope !== 'app' || hasWildcard(events.bucket)) return false
    return appBuckets.bucketAcl(events.bucket)?.read.some((entry) => principalMatches(entry, principal)) ?? false
  }

  /** The namespace table, for a SUBSCRIBE filter or a concrete topic being delivered. */
  function namespaceAllowsRead (principal: Principal, filter: string): boolean {
    if (principal.role === 'admin' && principal.kind === 'user') return true
    const levels = filter.split('/')
    const [scope, id] = levels
    switch (scope) {
      case 'users': return principal.kind === 'user' && id === principal.sub
      case 'groups': return id !== undefined && !hasWildcard(id) && principal.groups.includes(id)
      case 'app': return (levels.length === 2 && appAllows(id, 'subscribe', principal)) || appBucketEventsReadable(filter, principal)
      default: return false
    }
  }

  function namespaceAllowsWrite (principal: Principal, topic: string): boolean {
    if (principal.kind !== 'user') return false
    if (principal.role === 'admin') return true
    const levels = topic.split('/')
    const [scope, id, leaf] = levels
    switch (scope) {
      case 'users':
        // a topic with no user id level (`users`, `users//x`) is not under users/{uid}/
        if (id === undefined || id === '') return false
        if (principal.role === 'service') return true
        // the inbox is for direct push from servers; the owner only reads it
        return id === principal.sub && leaf !== 'inbox'
      case 'groups': return id !== undefined && principal.groups.includes(id)
      case 'app': return levels.length === 2 && appAllows(id, 'publish', principal)
      default: return false
    }
  }

  return {
    forPrincipal (principal) {
      const { pub, sub } = collectGrants(principal, options)
      return {
        canPublish (topic) {
          if (topic.startsWith('$')) return false
          // bucket change events come from Herald only (src/store/buckets.ts): nobody may forge one
          if (eventsTopicBucket(topic) !== undefined) return false
          if (pub.deny.some((f) => covers(f, topic))) return false
          return namespaceAllowsWrite(principal, topic) || pub.allow.some((f) => covers(f, topic))
        },
        canSubscribe (filter) {
          if (sub.deny.some((f) => covers(f, filter))) return false
          return namespaceAllowsRead(principal, filter) || sub.allow.some((f) => covers(f, filter))
        },
        canReceive (topic) {
          if (sub.deny.some((f) => covers(f, topic))) return false
          return namespaceAllowsRead(principal, topic) || sub.allow.some((f) => covers(f, topic))
        },
      }
    },
  }
}

/** Token grants, config rules naming this principal, and anonymous grants, with `%u` resolved. */
function collectGrants (principal: Principal, options: AclOptions): { pub: FilterSet, sub: FilterSet } {
  const sources: Grants[] = [principal.grants]
  if (principal.kind === 'anonymous') sources.push(options.anonymousGrants)
  for (const rule of options.rules) {
    if (principalMatches(rule.principal, principal)) sources.push(rule)
  }
  return {
    pub: split(sources.flatMap((g) => g.pub), principal),
    sub: split(sources.flatMap((g) => g.sub), principal),
  }
}

function split (entries: string[], principal: Principal): FilterSet {
  const allow: string[] = []
  const deny: string[] = []
  for (const entry of entries) {
    const negated = entry.startsWith('!')
    let filter = negated ? entry.slice(1) : entry
    if (filter.includes('%u')) {
      // an anonymous principal has no user id: a per-user grant cannot apply to it
      if (principal.sub === null) continue
      filter = filter.replaceAll('%u', principal.sub)
    }
    if (filter.length > 0) (negated ? deny : allow).push(filter)
  }
  return { allow, deny }
}
