import type { Flusher } from './context.js'

/**
 * Coalesces writes: connections that queued output during this loop turn are written once,
 * in a single setImmediate, so a burst of packets becomes one socket write per connection.
 */
export class ImmediateFlusher implements Flusher {
  #pending: { flush(): void }[] = []
  #armed = false
  readonly #run = (): void => {
    this.#armed = false
    const list = this.#pending
    this.#pending = []
    for (const t of list) t.flush()
  }

  schedule(target: { flush(): void }): void {
    this.#pending.push(target)
    if (!this.#armed) {
      this.#armed = true
      setImmediate(this.#run)
    }
  }
}
