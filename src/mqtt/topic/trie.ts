// Subscription trie: one node per filter level, literal levels in a Map and the two wildcards in
// dedicated slots, so matching a topic costs one Map lookup plus two field reads per level
// instead of a scan over every subscription. It must agree exactly with `matchesFilter`.

const DOLLAR = 0x24

class TrieNode<T> {
  // Created lazily: most nodes are leaves, and an empty Map per leaf adds up at 100k filters.
  children: Map<string, TrieNode<T>> | undefined = undefined
  plus: TrieNode<T> | undefined = undefined
  hash: TrieNode<T> | undefined = undefined
  entries: Map<string, T> | undefined = undefined
  // The filter this node spells, kept so `match` can report it without re-joining levels.
  filter = ''
}

/** Called once per matching (filter, key) entry. */
export type TrieVisitor<T> = (value: T, key: string, filter: string) => void

function isEmpty<T>(node: TrieNode<T>): boolean {
  return (
    node.entries === undefined && node.children === undefined && node.plus === undefined && node.hash === undefined
  )
}

function step<T>(node: TrieNode<T>, level: string): TrieNode<T> | undefined {
  if (level === '+') return node.plus
  if (level === '#') return node.hash
  return node.children?.get(level)
}

function stepOrCreate<T>(node: TrieNode<T>, level: string): TrieNode<T> {
  const found = step(node, level)
  if (found !== undefined) return found
  const created = new TrieNode<T>()
  if (level === '+') node.plus = created
  else if (level === '#') node.hash = created
  else {
    node.children ??= new Map()
    node.children.set(level, created)
  }
  return created
}

function detach<T>(parent: TrieNode<T>, level: string): void {
  if (level === '+') parent.plus = undefined
  else if (level === '#') parent.hash = undefined
  else if (parent.children !== undefined) {
    parent.children.delete(level)
    if (parent.children.size === 0) parent.children = undefined
  }
}

function emit<T>(node: TrieNode<T>, visit: TrieVisitor<T>): void {
  const entries = node.entries
  if (entries === undefined) return
  const filter = node.filter
  for (const [key, value] of entries) visit(value, key, filter)
}

/**
 * Maps (topic filter, key) pairs to values. The key is whatever makes a subscription unique at
 * one filter (a client id, or a share-group key), so re-adding the same pair replaces it, as a
 * repeated SUBSCRIBE must [MQTT-3.8.4-3].
 *
 * Filters must already have passed `validTopicFilter` and must not carry a `$share/` prefix.
 */
export class SubscriptionTrie<T> {
  readonly #root = new TrieNode<T>()
  #size = 0
  #filterCount = 0

  /** Number of (filter, key) entries. */
  get size(): number {
    return this.#size
  }

  /** Number of distinct filters with at least one entry. */
  get filterCount(): number {
    return this.#filterCount
  }

  /** Returns true if the pair is new, false if it replaced an existing value. */
  add(filter: string, key: string, value: T): boolean {
    const levels = filter.split('/')
    let node = this.#root
    let depth = 0
    for (const level of levels) {
      depth++
      // A '#' node is only ever visited as a leaf, so anything below it would be unreachable.
      if (level === '#' && depth !== levels.length) throw new RangeError(`'#' must be the last level: ${filter}`)
      node = stepOrCreate(node, level)
    }
    if (node.entries === undefined) {
      node.entries = new Map()
      node.filter = filter
      this.#filterCount++
    }
    const isNew = !node.entries.has(key)
    node.entries.set(key, value)
    if (isNew) this.#size++
    return isNew
  }

  /** Removes the pair and prunes nodes left empty; returns the removed value. */
  remove(filter: string, key: string): T | undefined {
    const levels = filter.split('/')
    const path: TrieNode<T>[] = [this.#root]
    let node: TrieNode<T> | undefined = this.#root
    for (const level of levels) {
      node = step(node, level)
      if (node === undefined) return undefined
      path.push(node)
    }
    const entries = node.entries
    if (entries === undefined || !entries.has(key)) return undefined
    const value = entries.get(key)
    entries.delete(key)
    this.#size--
    if (entries.size === 0) {
      node.entries = undefined
      node.filter = ''
      this.#filterCount--
    }
    // Walk back up, detaching each node that no longer leads to any entry.
    for (let i = levels.length; i > 0; i--) {
      const child = path[i]
      const parent = path[i - 1]
      const level = levels[i - 1]
      if (child === undefined || parent === undefined || level === undefined || !isEmpty(child)) break
      detach(parent, level)
    }
    return value
  }

  get(filter: string, key: string): T | undefined {
    let node: TrieNode<T> | undefined = this.#root
    for (const level of filter.split('/')) {
      node = step(node, level)
      if (node === undefined) return undefined
    }
    return node.entries?.get(key)
  }

  /**
   * Visits every entry whose filter matches `topic` (a valid topic name) exactly once, in no
   * particular order. `visit` may remove the entry it is given; entries added during the walk
   * may or may not be visited.
   */
  match(topic: string, visit: TrieVisitor<T>): void {
    const levels = topic.split('/')
    const first = levels[0]
    if (first === undefined) return
    const root = this.#root
    // A leading wildcard never matches a topic starting with '$' [MQTT-4.7.2-1].
    if (first.charCodeAt(0) !== DOLLAR) {
      if (root.hash !== undefined) emit(root.hash, visit)
      if (root.plus !== undefined) this.#walk(root.plus, levels, 1, visit)
    }
    const child = root.children?.get(first)
    if (child !== undefined) this.#walk(child, levels, 1, visit)
  }

  // `node` has matched levels[0, i). A private method rather than a closure keeps `match`
  // allocation-free apart from the split; depth is bounded by the topic's level count.
  #walk(node: TrieNode<T>, levels: readonly string[], i: number, visit: TrieVisitor<T>): void {
    // '#' also matches the parent level, so it applies whether or not levels remain.
    if (node.hash !== undefined) emit(node.hash, visit)
    const level = levels[i]
    if (level === undefined) {
      emit(node, visit)
      return
    }
    const child = node.children?.get(level)
    if (child !== undefined) this.#walk(child, levels, i + 1, visit)
    if (node.plus !== undefined) this.#walk(node.plus, levels, i + 1, visit)
  }
}
