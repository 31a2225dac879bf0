import type { ResolvedSpec } from './limits.js'

/**
 * The rules that loaded, per account: what a new worker must load again after a restart. A
 * worker only ever holds these, so they are also the host's count of accounts and rules.
 */
export class LoadedSpecs {
  readonly #byAccount = new Map<string, Map<string, ResolvedSpec>>()

  get accounts(): number {
    return this.#byAccount.size
  }

  get rules(): number {
    let n = 0
    for (const r of this.#byAccount.values()) n += r.size
    return n
  }

  get(account: string, name: string): ResolvedSpec | undefined {
    return this.#byAccount.get(account)?.get(name)
  }

  *all(): IterableIterator<ResolvedSpec> {
    for (const rules of this.#byAccount.values()) yield* rules.values()
  }

  set(spec: ResolvedSpec): void {
    let rules = this.#byAccount.get(spec.account)
    if (rules === undefined) {
      rules = new Map()
      this.#byAccount.set(spec.account, rules)
    }
    rules.set(spec.name, spec)
  }

  remove(account: string, name: string): void {
    const rules = this.#byAccount.get(account)
    rules?.delete(name)
    if (rules?.size === 0) this.#byAccount.delete(account)
  }
}
