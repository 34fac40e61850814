/**
 * The topics that hold a retained message, in a trie of topic levels, so a
 * SUBSCRIBE finds the retained messages its filters match by walking the
 * filters down the trie: what it costs is the levels it visits, not the number
 * of retained messages stored. aedes-persistence-level 9 scanned and decoded
 * every retained message for each filter of each SUBSCRIBE
 * (asyncPersistence.js `retainedMessagesByPattern`): with 50,000 of them, one
 * SUBSCRIBE cost half a second of CPU.
 *
 * The direction is the reverse of subscription matching (qlobber): the stored
 * items are topic names and the query is a filter. `+` visits every child of
 * a level, `#` a whole subtree, a plain level one child.
 *
 * Only the levels are kept (see Node for what that costs); the messages
 * stay in LevelDB and are read by key (RetainedMessages).
 *
 * It also counts topics per namespace (`users/{uid}`, `groups/{gid}`), for
 * the bounds on retained messages.
 */

/**
 * A level of the trie. Most levels below a user's namespace have one child
 * (`devices/<id>/status`): it is kept inline, and a Map is made only for a
 * second one. Topics are not stored: a match rebuilds them from the levels it
 * walks. That keeps a topic at about 100 bytes plus its unique levels.
 */
interface Node {
  /** the only child's level, while there is exactly one */
  onlyLevel: string | undefined
  only: Node | undefined
  /** every child, once there are two or more */
  children: Map<string, Node> | undefined
  /** whether a retained message ends at this level */
  retained: boolean
}

function newNode (): Node {
  return { onlyLevel: undefined, only: undefined, children: undefined, retained: false }
}

function childOf (node: Node, level: string): Node | undefined {
  if (node.children !== undefined) return node.children.get(level)
  return node.onlyLevel === level ? node.only : undefined
}

function addChild (node: Node, level: string, child: Node): void {
  if (node.children !== undefined) {
    node.children.set(level, child)
  } else if (node.only === undefined) {
    node.onlyLevel = level
    node.only = child
  } else {
    node.children = new Map([[node.onlyLevel as string, node.only], [level, child]])
    node.onlyLevel = undefined
    node.only = undefined
  }
}

function removeChild (node: Node, level: string): void {
  if (node.children === undefined) {
    if (node.onlyLevel === level) {
      node.onlyLevel = undefined
      node.only = undefined
    }
    return
  }
  node.children.delete(level)
  if (node.children.size > 1) return
  const [last] = node.children
  node.children = undefined
  if (last !== undefined) [node.onlyLevel, node.only] = last
}

function hasChildren (node: Node): boolean {
  return node.only !== undefined || node.children !== undefined
}

/** Calls `visit` with each child and its level. */
function eachChild (node: Node, visit: (level: string, child: Node) => void): void {
  if (node.children !== undefined) {
    for (const [level, child] of node.children) visit(level, child)
  } else if (node.only !== undefined) {
    visit(node.onlyLevel as string, node.only)
  }
}

const SEPARATOR = '/'

/**
 * The namespace a retained topic counts against: `users/{uid}` for topics
 * under `users/{uid}/` (and `users/{uid}` itself), `groups/{gid}` likewise;
 * undefined for every other topic.
 */
export function retainedNamespace (topic: string): { readonly kind: 'user' | 'group', readonly key: string } | undefined {
  const kind = topic.startsWith('users/') ? 'user' : topic.startsWith('groups/') ? 'group' : undefined
  if (kind === undefined) return undefined
  const first = topic.indexOf(SEPARATOR)
  const second = topic.indexOf(SEPARATOR, first + 1)
  // `users/` alone (an empty uid) is nobody's namespace
  if (second === first + 1 || first + 1 === topic.length) return undefined
  return { kind, key: second === -1 ? topic : topic.slice(0, second) }
}

export class RetainedIndex {
  readonly #root: Node = newNode()
  readonly #perNamespace = new Map<string, number>()
  #size = 0

  /** How many topics hold a retained message. */
  get size (): number {
    return this.#size
  }

  /** How many of them are in a namespace (`users/alice`, see retainedNamespace). */
  countIn (namespace: string): number {
    return this.#perNamespace.get(namespace) ?? 0
  }

  has (topic: string): boolean {
    let node: Node | undefined = this.#root
    for (const level of topic.split(SEPARATOR)) {
      node = childOf(node, level)
      if (node === undefined) return false
    }
    return node.retained
  }

  /** Returns false when the topic was there already. */
  add (topic: string): boolean {
    let node = this.#root
    for (const level of topic.split(SEPARATOR)) {
      let child = childOf(node, level)
      if (child === undefined) {
        child = newNode()
        addChild(node, level, child)
      }
      node = child
    }
    if (node.retained) return false
    node.retained = true
    this.#size++
    const namespace = retainedNamespace(topic)
    if (namespace !== undefined) this.#perNamespace.set(namespace.key, this.countIn(namespace.key) + 1)
    return true
  }

  /** Returns false when the topic was not there. Levels left with no topic below them go too. */
  delete (topic: string): boolean {
    const path: Array<[Node, string]> = []
    let node = this.#root
    for (const level of topic.split(SEPARATOR)) {
      const child = childOf(node, level)
      if (child === undefined) return false
      path.push([node, level])
      node = child
    }
    if (!node.retained) return false
    node.retained = false
    this.#size--
    const namespace = retainedNamespace(topic)
    if (namespace !== undefined) {
      const left = this.countIn(namespace.key) - 1
      if (left > 0) this.#perNamespace.set(namespace.key, left)
      else this.#perNamespace.delete(namespace.key)
    }
    for (let i = path.length - 1; i >= 0 && !node.retained && !hasChildren(node); i--) {
      const [parent, level] = path[i] as [Node, string]
      removeChild(parent, level)
      node = parent
    }
    return true
  }

  /**
   * The topics the filters match, each once however many filters match it,
   * in the order of the filters. [MQTT-4.7.2-1] a filter starting with a
   * wildcard matches no topic starting with `$`; `#` matches its parent level
   * too (`a/#` matches `a`) [MQTT-4.7.1-2].
   */
  match (filters: readonly string[]): string[] {
    const found: string[] = []
    for (const filter of filters) collect(this.#root, undefined, filter.split(SEPARATOR), 0, found)
    return filters.length > 1 ? [...new Set(found)] : found
  }
}

/** Adds the topics below `node` (whose topic is `prefix`) that the filter's levels from `depth` on match. */
function collect (node: Node, prefix: string | undefined, levels: readonly string[], depth: number, found: string[]): void {
  if (depth === levels.length) {
    if (node.retained) found.push(prefix as string)
    return
  }
  const level = levels[depth] as string
  if (level === '#') {
    // the parent level itself, then everything below it
    if (node.retained && prefix !== undefined) found.push(prefix)
    eachChild(node, (name, child) => {
      if (depth > 0 || !name.startsWith('$')) collectAll(child, join(prefix, name), found)
    })
    return
  }
  if (level === '+') {
    eachChild(node, (name, child) => {
      if (depth > 0 || !name.startsWith('$')) collect(child, join(prefix, name), levels, depth + 1, found)
    })
    return
  }
  const child = childOf(node, level)
  if (child !== undefined) collect(child, join(prefix, level), levels, depth + 1, found)
}

function collectAll (node: Node, topic: string, found: string[]): void {
  if (node.retained) found.push(topic)
  eachChild(node, (name, child) => collectAll(child, topic + SEPARATOR + name, found))
}

function join (prefix: string | undefined, level: string): string {
  return prefix === undefined ? level : prefix + SEPARATOR + level
}
