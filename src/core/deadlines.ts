import type { Clock, TimerHandle } from './clock.js'
import type { Disposable } from './scope.js'

interface Entry {
  at: number
  seq: number
  fn: () => void
  index: number
}

export interface DeadlineHandle {
  readonly at: number
  cancel(): void
}

/**
 * One timer for many absolute deadlines (wills, session expiry, retries): a binary heap
 * keyed on absolute ms, so persisted deadlines survive restarts unchanged.
 */
export class DeadlineQueue implements Disposable {
  readonly #clock: Clock
  readonly #heap: Entry[] = []
  #timer: TimerHandle | undefined
  #timerAt = Number.POSITIVE_INFINITY
  #seq = 0

  constructor(clock: Clock) {
    this.#clock = clock
  }

  get size(): number {
    return this.#heap.length
  }

  at(deadline: number, fn: () => void): DeadlineHandle {
    const entry: Entry = { at: deadline, seq: this.#seq++, fn, index: this.#heap.length }
    this.#heap.push(entry)
    this.#up(entry.index)
    this.#arm()
    return { at: deadline, cancel: () => this.#remove(entry) }
  }

  dispose(): void {
    this.#timer?.cancel()
    this.#timer = undefined
    this.#heap.length = 0
  }

  #fire(): void {
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    const now = this.#clock.now()
    for (let top = this.#heap[0]; top !== undefined && top.at <= now; top = this.#heap[0]) {
      this.#remove(top)
      top.fn()
    }
    this.#arm()
  }

  #arm(): void {
    const top = this.#heap[0]
    if (top === undefined) {
      this.#timer?.cancel()
      this.#timer = undefined
      this.#timerAt = Number.POSITIVE_INFINITY
      return
    }
    if (this.#timer !== undefined && this.#timerAt <= top.at) return
    this.#timer?.cancel()
    this.#timerAt = top.at
    this.#timer = this.#clock.setTimer(top.at - this.#clock.now(), () => this.#fire())
  }

  #remove(entry: Entry): void {
    const i = entry.index
    if (i < 0 || this.#heap[i] !== entry) return
    const last = this.#heap.pop()
    entry.index = -1
    if (last !== undefined && last !== entry) {
      this.#heap[i] = last
      last.index = i
      this.#down(i)
      this.#up(i)
    }
  }

  #less(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }

  #swap(i: number, j: number): void {
    const a = this.#heap[i]
    const b = this.#heap[j]
    if (a === undefined || b === undefined) return
    this.#heap[i] = b
    this.#heap[j] = a
    b.index = i
    a.index = j
  }

  #up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1
      const child = this.#heap[i]
      const parent = this.#heap[p]
      if (child === undefined || parent === undefined || !this.#less(child, parent)) return
      this.#swap(i, p)
      i = p
    }
  }

  #down(i: number): void {
    const h = this.#heap
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      let best = h[i]
      const left = h[l]
      const right = h[r]
      if (left !== undefined && best !== undefined && this.#less(left, best)) {
        m = l
        best = left
      }
      if (right !== undefined && best !== undefined && this.#less(right, best)) m = r
      if (m === i) return
      this.#swap(i, m)
      i = m
    }
  }
}
