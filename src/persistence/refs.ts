/**
 * How many deliveries, wills and retained topics refer to each message row, kept in memory
 * instead of by triggers: one entry per row that exists in the database, as committed plus
 * the writes of the open transaction. The store changes a count only after the statement
 * behind it succeeded, so the counts follow the rows; every change made in a transaction is
 * logged and undone if it rolls back, so they follow a rollback too. A row whose count drops
 * to 0 is noted and deleted at commit if nothing referred to it again meanwhile.
 */
export class RefCounts {
  readonly #refs = new Map<number, number>()
  /** Pairs of (id, previous count or -1 for no row), in the order the transaction changed them. */
  #undo: number[] = []
  /** Rows that had no reference at some point since the last commit. */
  #zero: number[] = []

  /** Whether the row exists (committed or written in the open transaction). */
  has(id: number): boolean {
    return this.#refs.has(id)
  }

  /** At open, outside any transaction: a row found with `n` references (0: deleted at the first commit). */
  found(id: number, n: number): void {
    this.#refs.set(id, n)
    if (n === 0) this.#zero.push(id)
  }

  /** A row was inserted; its first reference is still to be added. */
  created(id: number): void {
    this.#set(id, 0, -1)
    this.#zero.push(id)
  }

  add(id: number): void {
    const n = this.#refs.get(id)
    if (n !== undefined) this.#set(id, n + 1, n)
  }

  release(id: number): void {
    const n = this.#refs.get(id)
    if (n === undefined) return
    this.#set(id, n > 0 ? n - 1 : 0, n)
    if (n <= 1) this.#zero.push(id)
  }

  /** At commit: the rows without references, forgotten here (restored if the commit fails). */
  takeUnreferenced(): number[] {
    const out: number[] = []
    for (const id of this.#zero) {
      if (this.#refs.get(id) !== 0) continue
      out.push(id)
      this.#undo.push(id, 0)
      this.#refs.delete(id)
    }
    return out
  }

  committed(): void {
    this.#undo = []
    this.#zero = []
  }

  rolledBack(): void {
    const undo = this.#undo
    for (let i = undo.length - 2; i >= 0; i -= 2) {
      const id = undo[i] as number
      const before = undo[i + 1] as number
      if (before < 0) this.#refs.delete(id)
      else this.#refs.set(id, before)
    }
    this.#undo = []
    this.#zero = this.#zero.filter((id) => this.#refs.get(id) === 0)
  }

  /** The sum of all counts (diagnostics). */
  total(): number {
    let sum = 0
    for (const n of this.#refs.values()) sum += n
    return sum
  }

  #set(id: number, n: number, before: number): void {
    this.#undo.push(id, before)
    this.#refs.set(id, n)
  }
}
