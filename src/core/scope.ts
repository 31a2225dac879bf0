export interface Disposable {
  dispose(): void
}

/**
 * Owns resources and releases them in reverse order of registration, so a resource
 * is always disposed before the ones it was built on.
 */
export class Scope implements Disposable {
  readonly #items: Disposable[] = []
  #disposed = false

  add<T extends Disposable>(item: T): T {
    if (this.#disposed) {
      item.dispose()
      return item
    }
    this.#items.push(item)
    return item
  }

  defer(fn: () => void): Disposable {
    return this.add({ dispose: fn })
  }

  get disposed(): boolean {
    return this.#disposed
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    const errors: unknown[] = []
    for (let i = this.#items.length - 1; i >= 0; i--) {
      try {
        this.#items[i]?.dispose()
      } catch (e) {
        errors.push(e)
      }
    }
    this.#items.length = 0
    if (errors.length > 0) throw new AggregateError(errors, 'errors while disposing scope')
  }
}
