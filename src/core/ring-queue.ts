/** A FIFO ring buffer that grows by doubling; shift and push are O(1) without array copies. */
export class RingQueue<T> {
  #items: (T | undefined)[]
  #head = 0
  #length = 0

  /** Starts empty: most sessions never queue, and idle connections should cost little. */
  constructor(capacity = 0) {
    this.#items = new Array(capacity)
  }

  get length(): number {
    return this.#length
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow()
    this.#items[(this.#head + this.#length) % this.#items.length] = item
    this.#length++
  }

  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head]
  }

  shift(): T | undefined {
    if (this.#length === 0) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head] = undefined
    this.#head = (this.#head + 1) % this.#items.length
    this.#length--
    return item
  }

  clear(): void {
    this.#items = []
    this.#head = 0
    this.#length = 0
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.#length; i++) {
      const item = this.#items[(this.#head + i) % this.#items.length]
      if (item !== undefined) yield item
    }
  }

  #grow(): void {
    const next: (T | undefined)[] = new Array(Math.max(8, this.#items.length * 2))
    for (let i = 0; i < this.#length; i++) next[i] = this.#items[(this.#head + i) % this.#items.length]
    this.#items = next
    this.#head = 0
  }
}
