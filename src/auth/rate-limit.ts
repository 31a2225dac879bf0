export interface RateLimitSettings {
  /** Failed logins allowed per key within the window. */
  readonly maxFailures: number
  readonly windowMs: number
  /** How long a key is refused once it reached the limit. */
  readonly blockMs: number
}

interface Entry {
  failures: number
  windowStart: number
  blockedUntil: number
}

/** Keys tracked at most; the oldest are forgotten first, so a spray of addresses cannot grow memory. */
const MAX_KEYS = 10_000

/**
 * Failed logins per key (a client address, an account): past `maxFailures` within a window the
 * key is refused for `blockMs` without its password even being checked.
 */
export class FailureLimiter {
  readonly #settings: RateLimitSettings
  readonly #now: () => number
  readonly #entries = new Map<string, Entry>()

  constructor(settings: RateLimitSettings, now: () => number) {
    this.#settings = settings
    this.#now = now
  }

  /** How many keys are tracked. */
  get tracked(): number {
    return this.#entries.size
  }

  /** Milliseconds the key is still refused for; 0 when it may try. */
  blockedFor(key: string): number {
    const e = this.#entries.get(key)
    if (e === undefined) return 0
    return Math.max(0, e.blockedUntil - this.#now())
  }

  failed(key: string): void {
    const now = this.#now()
    let e = this.#entries.get(key)
    if (e === undefined || now - e.windowStart >= this.#settings.windowMs) {
      this.#entries.delete(key)
      e = { failures: 0, windowStart: now, blockedUntil: e?.blockedUntil ?? 0 }
      if (this.#entries.size >= MAX_KEYS) {
        const oldest = this.#entries.keys().next().value
        if (oldest !== undefined) this.#entries.delete(oldest)
      }
      this.#entries.set(key, e)
    }
    e.failures++
    if (e.failures >= this.#settings.maxFailures) e.blockedUntil = now + this.#settings.blockMs
  }

  succeeded(key: string): void {
    const e = this.#entries.get(key)
    if (e !== undefined && e.blockedUntil <= this.#now()) this.#entries.delete(key)
  }
}
