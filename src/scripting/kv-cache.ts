// The worker's copy of one account's rule KV store. `kv.get` reads it synchronously; a batch's
// writes reach it only after the batch succeeded, all or none. The broker's store is the source
// of truth: it seeds this cache (`kvSnapshot`) and persists the same effects the host returns.
import { err, ok, type Result } from '../core/result.js'
import { KV_MAX_ACCOUNT_BYTES, KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES } from './limits.js'
import type { Effect } from './types.js'

const size = (key: string, value: string): number => Buffer.byteLength(key) + Buffer.byteLength(value)

export class KvCache {
  readonly #map = new Map<string, string>()
  #bytes = 0

  constructor(seed: Readonly<Record<string, string>>) {
    this.update(Object.entries(seed))
  }

  get(key: string): string | undefined {
    return this.#map.get(key)
  }

  /** UTF-8 bytes of all keys and values. */
  get bytes(): number {
    return this.#bytes
  }

  get size(): number {
    return this.#map.size
  }

  /** Changes made outside the rules (null deletes). Not limited: the store already accepted them. */
  update(changes: Iterable<readonly [string, string | null]>): void {
    for (const [key, value] of changes) {
      const old = this.#map.get(key)
      if (old !== undefined) this.#bytes -= size(key, old)
      if (value === null) this.#map.delete(key)
      else {
        this.#map.set(key, value)
        this.#bytes += size(key, value)
      }
    }
  }

  /**
   * Checks a batch's kv effects against the limits and applies them all, or none with the reason.
   * An account already over its limit may still shrink.
   */
  apply(effects: readonly Effect[]): Result<void, string> {
    const touched = new Map<string, string | null>()
    for (const e of effects) {
      if (e.kind !== 'kv.set' && e.kind !== 'kv.delete') continue
      if (Buffer.byteLength(e.key) > KV_MAX_KEY_BYTES) return err(`kv: key is longer than ${KV_MAX_KEY_BYTES} bytes`)
      if (e.kind === 'kv.set') {
        if (Buffer.byteLength(e.value) > KV_MAX_VALUE_BYTES) return err(`kv.set: value is larger than ${KV_MAX_VALUE_BYTES} bytes`)
        touched.set(e.key, e.value)
      } else touched.set(e.key, null)
    }
    if (touched.size === 0) return ok(undefined)
    let delta = 0
    for (const [key, value] of touched) {
      const old = this.#map.get(key)
      delta += (value === null ? 0 : size(key, value)) - (old === undefined ? 0 : size(key, old))
    }
    if (delta > 0 && this.#bytes + delta > KV_MAX_ACCOUNT_BYTES) {
      return err(`kv: the account would store ${this.#bytes + delta} bytes, more than its limit of ${KV_MAX_ACCOUNT_BYTES}`)
    }
    this.update(touched)
    return ok(undefined)
  }
}
