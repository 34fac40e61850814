import type { AclRuleConfig } from '../config/index.js'
import type { Grants, Identity, Principal } from '../auth/principal.js'
import { bucketRights as scopeRights, type BucketRights } from '../buckets/access.js'
import { bucketEventsTopic, eventsTopicBucket, type BucketScope } from '../buckets/scope.js'
import { noAppBuckets, type AppBucketAcl, type AppBucketDirectory } from './app-buckets.js'
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
  /**
   * What `principal` may do with a bucket over HTTP: the scope rules
   * (buckets/access.ts; `appAcl` is the app bucket's, undefined when it does
   * not exist), then the principal's deny filters on the bucket's events
   * topic, the topic the bucket is read through over MQTT. A `sub` deny there
   * closes reading and writing (a write answers with the object); a `pub`
   * deny closes writing.
   */
  bucketRights (principal: Principal, scope: BucketScope, bucket: string, appAcl: AppBucketAcl | undefined): BucketRights
}

interface FilterSet {
  readonly allow: readonly string[]
  readonly deny: readonly string[]
}

/** The namespace table of DESIGN.md: what a principal may read and write without any grant. */
interface Namespace {
  allowsRead (who: Identity, filter: string): boolean
  allowsWrite (who: Identity, topic: string): boolean
}

/**
 * The topic namespace of DESIGN.md ("MQTT topic namespace and ACL") plus
 * grants from the token's `acl` claim and from config rules. Deny filters
 * (`!filter`) win over everything; `$`-topics can never be published to.
 */
export function createAcl (options: AclOptions): Acl {
  const { appTopics } = options
  const appBuckets = options.appBuckets ?? noAppBuckets
  const pool = new FilterSetPool(MAX_SHARED_FILTER_SETS)

  function appAllows (name: string | undefined, action: 'subscribe' | 'publish', who: Identity): boolean {
    if (name === undefined || hasWildcard(name)) return false
    const acl = appTopics.get(name)
    return acl !== undefined && acl[action].some((entry) => principalMatches(entry, who))
  }

  /** `app/buckets/{name}/events`: readable per the app bucket's `read` ACL. */
  function appBucketEventsReadable (filter: string, who: Identity): boolean {
    const events = eventsTopicBucket(filter)
    if (events?.scope !== 'app' || hasWildcard(events.bucket)) return false
    return appBuckets.bucketAcl(events.bucket)?.read.some((entry) => principalMatches(entry, who)) ?? false
  }

  const namespace: Namespace = {
    /** For a SUBSCRIBE filter or a concrete topic being delivered. */
    allowsRead (who, filter) {
      if (who.role === 'admin' && who.kind === 'user') return true
      // by the first level, without splitting the whole topic: this runs for every delivery
      if (filter.startsWith(USERS)) return who.kind === 'user' && levelAt(filter, USERS.length) === who.sub
      if (filter.startsWith(GROUPS)) {
        const id = levelAt(filter, GROUPS.length)
        return !hasWildcard(id) && who.groups.includes(id)
      }
      if (filter.startsWith(APP)) return (isLastLevel(filter, APP.length) && appAllows(filter.slice(APP.length), 'subscribe', who)) || appBucketEventsReadable(filter, who)
      return false
    },
    allowsWrite (who, topic) {
      if (who.kind !== 'user') return false
      if (who.role === 'admin') return true
      if (topic.startsWith(USERS)) {
        const id = levelAt(topic, USERS.length)
        // a topic with no user id level (`users//x`) is not under users/{uid}/
        if (id === '') return false
        if (who.role === 'service') return true
        // the inbox is for direct push from servers; the owner only reads it
        const leaf = USERS.length + id.length + 1
        return id === who.sub && !(leaf <= topic.length && levelAt(topic, leaf) === 'inbox')
      }
      if (topic.startsWith(GROUPS)) return who.groups.includes(levelAt(topic, GROUPS.length))
      if (topic.startsWith(APP)) return isLastLevel(topic, APP.length) && appAllows(topic.slice(APP.length), 'publish', who)
      return false
    },
  }

  function access (principal: Principal): PrincipalAccess {
    const sources = grantSources(principal, options)
    const write = filterSet(sources.flatMap((g) => g.pub), principal, pool)
    const read = filterSet(sources.flatMap((g) => g.sub), principal, pool)
    return new PrincipalAccess(principal, write, read, namespace)
  }

  return {
    forPrincipal: access,
    bucketRights (principal, scope, bucket, appAcl) {
      const rights = scopeRights(principal, scope, appAcl)
      if (!rights.read && !rights.write) return rights
      const topic = bucketEventsTopic(scope, bucket)
      const who = access(principal)
      const readDenied = who.denies('read', topic)
      return { read: rights.read && !readDenied, write: rights.write && !readDenied && !who.denies('write', topic) }
    },
  }
}

const USERS = 'users/'
const GROUPS = 'groups/'
const APP = 'app/'

/** The level of `topic` that starts at index `from`: up to the next `/` or the end. */
function levelAt (topic: string, from: number): string {
  const end = topic.indexOf('/', from)
  return end < 0 ? topic.slice(from) : topic.slice(from, end)
}

/** Whether the level starting at `from` is the topic's last. */
function isLastLevel (topic: string, from: number): boolean {
  return topic.indexOf('/', from) < 0
}

/**
 * One principal's rights. One of these lives as long as each MQTT connection, so it is a class
 * (methods on the prototype, not three closures per connection) and keeps only who the principal
 * is: the token's own grants are already merged into the filter sets.
 */
class PrincipalAccess implements PrincipalAcl, Identity {
  readonly kind: Identity['kind']
  readonly sub: Identity['sub']
  readonly groups: Identity['groups']
  readonly role: Identity['role']
  readonly #write: FilterSet
  readonly #read: FilterSet
  readonly #namespace: Namespace

  constructor (principal: Identity, write: FilterSet, read: FilterSet, namespace: Namespace) {
    this.kind = principal.kind
    this.sub = principal.sub
    this.groups = principal.groups
    this.role = principal.role
    this.#write = write
    this.#read = read
    this.#namespace = namespace
  }

  canPublish (topic: string): boolean {
    if (topic.startsWith('$')) return false
    // bucket change events come from Herald only (the bucket stores, src/buckets/store.ts): nobody may forge one
    if (eventsTopicBucket(topic) !== undefined) return false
    if (this.denies('write', topic)) return false
    return this.#namespace.allowsWrite(this, topic) || anyCovers(this.#write.allow, topic)
  }

  canSubscribe (filter: string): boolean {
    return this.canReceive(filter)
  }

  canReceive (topic: string): boolean {
    if (this.denies('read', topic)) return false
    return this.#namespace.allowsRead(this, topic) || anyCovers(this.#read.allow, topic)
  }

  /** Does a deny filter (`!filter`) of the principal's cover `topic`? */
  denies (action: 'read' | 'write', topic: string): boolean {
    return anyCovers((action === 'read' ? this.#read : this.#write).deny, topic)
  }
}

/**
 * Does one of `filters` cover `topic`? A loop rather than `some` with a closure: this runs
 * two or three times for every publish and every delivery, and each closure was garbage.
 */
function anyCovers (filters: readonly string[], topic: string): boolean {
  for (let i = 0; i < filters.length; i++) if (covers(filters[i] as string, topic)) return true
  return false
}

/** Token grants, config rules naming this principal, and anonymous grants. */
function grantSources (principal: Principal, options: AclOptions): Grants[] {
  const sources: Grants[] = [principal.grants]
  if (principal.kind === 'anonymous') sources.push(options.anonymousGrants)
  for (const rule of options.rules) {
    if (principalMatches(rule.principal, principal)) sources.push(rule)
  }
  return sources
}

const noFilters: FilterSet = Object.freeze({ allow: Object.freeze([]), deny: Object.freeze([]) })

/** Distinct filter sets kept for sharing; beyond this many, further ones are not shared (no unbounded growth). */
const MAX_SHARED_FILTER_SETS = 1024

/** `!filter` entries deny, the others allow; `%u` is resolved. */
function filterSet (entries: readonly string[], principal: Principal, pool: FilterSetPool): FilterSet {
  if (entries.length === 0) return noFilters
  const allow: string[] = []
  const deny: string[] = []
  let personal = false
  for (const entry of entries) {
    const negated = entry.startsWith('!')
    let filter = negated ? entry.slice(1) : entry
    if (filter.includes('%u')) {
      // an anonymous principal has no user id: a per-user grant cannot apply to it
      if (principal.sub === null) continue
      filter = filter.replaceAll('%u', principal.sub)
      personal = true
    }
    if (filter.length > 0) (negated ? deny : allow).push(filter)
  }
  if (allow.length === 0 && deny.length === 0) return noFilters
  const set = { allow, deny }
  // a set with the user id in it is this user's alone
  return personal ? set : pool.intern(set)
}

/**
 * Filter sets without a user id in them, one copy each: the connections of
 * devices whose tokens carry the same `acl` claim share it.
 */
class FilterSetPool {
  readonly #sets = new Map<string, FilterSet>()
  readonly #limit: number

  constructor (limit: number) {
    this.#limit = limit
  }

  intern (set: FilterSet): FilterSet {
    const key = JSON.stringify([set.allow, set.deny])
    const known = this.#sets.get(key)
    if (known !== undefined) return known
    if (this.#sets.size < this.#limit) this.#sets.set(key, set)
    return set
  }
}
