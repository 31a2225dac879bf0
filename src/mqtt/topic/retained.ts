// Retained messages indexed by topic level, so a SUBSCRIBE with wildcards walks only the
// branches its filter can reach instead of testing every retained topic. It must agree exactly
// with filtering all stored topics through `matchesFilter`.

const DOLLAR = 0x24

interface Slot<T> {
  readonly topic: string
  value: T
}

class RetainedNode<T> {
  // Created lazily: most nodes are leaves.
  children: Map<string, RetainedNode<T>> | undefined = undefined
  // A separate slot (rather than `value: T | undefined`) keeps "no value" distinct from a
  // stored `undefined` and carries the topic for `match` without re-joining levels.
  slot: Slot<T> | undefined = undefined
}

/** Called once per retained topic that matches. */
export type RetainedVisitor<T> = (topic: string, value: T) => void

/**
 * One value per topic name. Topics must already have passed `validTopicName`; filters given
 * to `match` must have passed `validTopicFilter` (without a `$share/` prefix).
 */
export class RetainedTree<T> {
  readonly #root = new RetainedNode<T>()
  #size = 0

  /** Number of stored topics. */
  get size(): number {
    return this.#size
  }

  /** Stores or replaces the value for `topic`; returns true if the topic was new. */
  set(topic: string, value: T): boolean {
    let node = this.#root
    for (const level of topic.split('/')) {
      let child = node.children?.get(level)
      if (child === undefined) {
        child = new RetainedNode<T>()
        node.children ??= new Map()
        node.children.set(level, child)
      }
      node = child
    }
    if (node.slot !== undefined) {
      node.slot.value = value
      return false
    }
    node.slot = { topic, value }
    this.#size++
    return true
  }

  get(topic: string): T | undefined {
    return this.#find(topic)?.slot?.value
  }

  has(topic: string): boolean {
    return this.#find(topic)?.slot !== undefined
  }

  /** Removes `topic` and prunes nodes left empty; returns whether it was stored. */
  delete(topic: string): boolean {
    const levels = topic.split('/')
    const path: RetainedNode<T>[] = [this.#root]
    let node: RetainedNode<T> | undefined = this.#root
    for (const level of levels) {
      node = node.children?.get(level)
      if (node === undefined) return false
      path.push(node)
    }
    if (node.slot === undefined) return false
    node.slot = undefined
    this.#size--
    for (let i = levels.length; i > 0; i--) {
      const child = path[i]
      const parent = path[i - 1]
      const level = levels[i - 1]
      if (child === undefined || parent === undefined || level === undefined) break
      if (child.slot !== undefined || child.children !== undefined || parent.children === undefined) break
      parent.children.delete(level)
      if (parent.children.size === 0) parent.children = undefined
    }
    return true
  }

  /**
   * Visits every stored topic matching `filter` exactly once, in no particular order. `visit`
   * may delete the topic it is given (e.g. an expired message); topics set during the walk may
   * or may not be visited.
   */
  match(filter: string, visit: RetainedVisitor<T>): void {
    // Most retained lookups come from exact-topic subscriptions; skip the walk for those.
    if (!filter.includes('+') && !filter.includes('#')) {
      const slot = this.#find(filter)?.slot
      if (slot !== undefined) visit(slot.topic, slot.value)
      return
    }
    this.#walk(this.#root, filter.split('/'), 0, visit)
  }

  /** All stored (topic, value) pairs, in no particular order. */
  *entries(): Generator<[topic: string, value: T], void, undefined> {
    // An explicit stack, because nested `yield*` costs a generator per level.
    const stack: RetainedNode<T>[] = [this.#root]
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.slot !== undefined) yield [node.slot.topic, node.slot.value]
      if (node.children !== undefined) for (const child of node.children.values()) stack.push(child)
    }
  }

  #find(topic: string): RetainedNode<T> | undefined {
    let node: RetainedNode<T> | undefined = this.#root
    for (const level of topic.split('/')) {
      node = node.children?.get(level)
      if (node === undefined) return undefined
    }
    return node
  }

  // `node` has matched filter levels [0, i).
  #walk(node: RetainedNode<T>, levels: readonly string[], i: number, visit: RetainedVisitor<T>): void {
    const level = levels[i]
    if (level === undefined) {
      const slot = node.slot
      if (slot !== undefined) visit(slot.topic, slot.value)
      return
    }
    // At the root, a leading wildcard must skip topics starting with '$' [MQTT-4.7.2-1].
    const atRoot = i === 0
    if (level === '#') {
      // '#' matches the parent level too, so `node` itself counts [MQTT-4.7.1-2].
      this.#visitAll(node, atRoot, visit)
      return
    }
    const children = node.children
    if (children === undefined) return
    if (level === '+') {
      for (const [name, child] of children) {
        if (atRoot && name.charCodeAt(0) === DOLLAR) continue
        this.#walk(child, levels, i + 1, visit)
      }
      return
    }
    const child = children.get(level)
    if (child !== undefined) this.#walk(child, levels, i + 1, visit)
  }

  #visitAll(node: RetainedNode<T>, skipDollar: boolean, visit: RetainedVisitor<T>): void {
    const slot = node.slot
    if (slot !== undefined) visit(slot.topic, slot.value)
    const children = node.children
    if (children === undefined) return
    for (const [name, child] of children) {
      if (skipDollar && name.charCodeAt(0) === DOLLAR) continue
      this.#visitAll(child, false, visit)
    }
  }
}
