// All rules of one account: one WASM module (the hard memory cap and the failure domain), one
// runtime and context per rule inside it, and the account's KV cache.
import { randomInt } from 'node:crypto'
import { err, ok, type Result } from '../core/result.js'
import { decodeOutput } from './effects.js'
import { type Failure, hostFailure } from './failures.js'
import type { KvCache } from './kv-cache.js'
import { batchBudgetMs, RECYCLE_FRACTION, type ResolvedSpec } from './limits.js'
import { KIND_EVENT, KIND_MESSAGE, KIND_TIMER } from './protocol.js'
import type { AccountModule, QuickJSFactory } from './quickjs.js'
import { type LoadFailure, RuleSandbox } from './rule-sandbox.js'
import type { DisposeReport, InvokeResult, LoadError } from './types.js'

interface RuleEntry {
  spec: ResolvedSpec
  sandbox: RuleSandbox | undefined
  /** Why the rule has no sandbox after a rebuild (it failed to start again). */
  broken: string | undefined
}

/** Counters the worker reports to the host. */
export interface SandboxCounters {
  disposeFailures: number
}

export interface InvokeCall {
  readonly name: string
  readonly batch: string
  readonly now: number
  readonly inputs: number
  readonly kinds: number
  readonly capMs: number
}

const MB = 1024 * 1024

function failed(f: Pick<Failure, 'code' | 'message'>): InvokeResult {
  return { ok: false, error: { code: f.code, message: f.message } }
}

function loadError(f: LoadFailure): LoadError {
  const e: LoadError = { code: f.code, message: f.message }
  if (f.line !== undefined) e.line = f.line
  if (f.column !== undefined) e.column = f.column
  return e
}

export class AccountSandboxes {
  readonly account: string
  readonly #factory: QuickJSFactory
  readonly #kv: KvCache
  readonly #counters: SandboxCounters
  readonly #rules = new Map<string, RuleEntry>()
  #module: AccountModule | undefined
  #needsRebuild = false

  constructor(account: string, factory: QuickJSFactory, kv: KvCache, counters: SandboxCounters) {
    this.account = account
    this.#factory = factory
    this.#kv = kv
    this.#counters = counters
  }

  /** Set after an invocation or load that poisoned or filled the module; the worker then calls `rebuild`. */
  get needsRebuild(): boolean {
    return this.#needsRebuild
  }

  get ruleCount(): number {
    return this.#rules.size
  }

  /** Compiles the rule and, only if that worked, replaces the running rule of that name. */
  async load(spec: ResolvedSpec, now: number): Promise<Result<void, LoadError>> {
    if (this.#module === undefined) {
      const built = await this.#newModule(Math.max(spec.limits.memoryMb, this.#capMb()))
      if (!built.ok) return err(built.error)
      this.#module = built.value
      // Rules left without a module by an earlier failure start again in this one.
      if (this.#rules.size > 0) this.#needsRebuild = true
    }
    const module = this.#module
    const created = this.#create(module, spec, now)
    if (!created.ok) {
      if (created.error.poison === 'module') this.#needsRebuild = true
      return err(loadError(created.error))
    }
    const old = this.#rules.get(spec.name)
    this.#rules.set(spec.name, { spec, sandbox: created.value, broken: undefined })
    if (old?.sandbox !== undefined) this.#disposeSandbox(old.sandbox)
    // A larger cap takes a new module; WASM memory can grow but its maximum is fixed.
    if (spec.limits.memoryMb * MB > module.capBytes) this.#needsRebuild = true
    this.#checkMemory()
    return ok(undefined)
  }

  unload(name: string): void {
    const entry = this.#rules.get(name)
    if (entry === undefined) return
    this.#rules.delete(name)
    if (entry.sandbox !== undefined) this.#disposeSandbox(entry.sandbox)
  }

  invoke(call: InvokeCall): InvokeResult {
    const entry = this.#rules.get(call.name)
    if (entry === undefined) return failed({ code: 'no-handler', message: `no rule '${call.name}' is loaded for this account` })
    const sandbox = entry.sandbox
    if (sandbox === undefined) {
      if (this.#module === undefined) this.#needsRebuild = true
      return failed({ code: 'crashed', message: entry.broken ?? 'the rule is restarting' })
    }
    const missing = missingHandler(call.kinds, sandbox.handlers)
    if (missing !== undefined) return failed({ code: 'no-handler', message: `the rule does not export ${missing}` })
    const spec = entry.spec
    try {
      const run = sandbox.run(call.batch, batchBudgetMs(spec.limits.timeMs, call.inputs, call.capMs))
      if (!run.ok) return this.#failedRun(entry, run.error, call.now)
      const decoded = decodeOutput(run.value, `${spec.name}.js`, spec.limits.maxPublishes * call.inputs)
      if (!decoded.ok) return this.#failedRun(entry, decoded.error, call.now)
      const stored = this.#kv.apply(decoded.value.effects)
      if (!stored.ok) return failed({ code: 'limit', message: stored.error })
      return { ok: true, effects: decoded.value.effects, returned: decoded.value.returned }
    } catch (e) {
      // The library or WASM threw on the host side: a trap, an abort, a native stack overflow.
      const f = hostFailure(e)
      this.#needsRebuild = true
      return failed(f)
    } finally {
      this.#checkMemory()
    }
  }

  /**
   * Throws the module away (never disposing inside a module that may be poisoned) and starts every
   * rule again from its source. A rule that fails to start, or poisons the new module while
   * starting, is left broken so the others run.
   */
  async rebuild(now: number, progress: () => void): Promise<void> {
    this.#needsRebuild = false
    this.#module = undefined
    for (const entry of this.#rules.values()) entry.sandbox = undefined
    if (this.#rules.size === 0) return
    const skip = new Set<string>()
    for (;;) {
      const built = await this.#newModule(this.#capMb())
      if (!built.ok) {
        for (const entry of this.#rules.values()) entry.broken = built.error.message
        return
      }
      const module = built.value
      let poisoned = false
      for (const [name, entry] of this.#rules) {
        if (skip.has(name)) continue
        const created = this.#create(module, entry.spec, now)
        progress()
        if (created.ok) {
          entry.sandbox = created.value
          entry.broken = undefined
          continue
        }
        skip.add(name)
        entry.broken = `${RESTART_FAILED}: ${created.error.message}`
        if (created.error.poison === 'module') {
          poisoned = true
          break
        }
      }
      if (!poisoned) {
        this.#module = module
        return
      }
      for (const entry of this.#rules.values()) entry.sandbox = undefined
    }
  }

  /** Disposes every rule (recording failures) and checks the module for leaked allocations. */
  close(report: DisposeReport): void {
    for (const [name, entry] of this.#rules) {
      if (entry.sandbox === undefined) continue
      try {
        entry.sandbox.dispose()
      } catch (e) {
        this.#counters.disposeFailures++
        report.disposeErrors.push(`${this.account}/${name}: ${e instanceof Error ? e.message : String(e)}`)
      }
      entry.sandbox = undefined
    }
    this.#rules.clear()
    if (this.#module?.leaked() === true) report.leaks.push(this.account)
    this.#module = undefined
  }

  #failedRun(entry: RuleEntry, failure: Failure, now: number): InvokeResult {
    const f = this.#nullMeansMemory(failure)
    if (f.poison === 'module') this.#needsRebuild = true
    else if (f.poison === 'rule') this.#restartRule(entry, now)
    return failed(f)
  }

  /**
   * When QuickJS runs out of memory while already handling an out-of-memory error it cannot create
   * an error object and the guest sees `null` thrown. With the module (nearly) full that is what
   * happened; a rule throwing null in a roomy module is just a rule throwing null.
   */
  #nullMeansMemory(f: Failure): Failure {
    const m = this.#module
    if (f.code !== 'runtime' || !f.message.startsWith('Error: uncaught null') || m === undefined) return f
    if (m.memory.buffer.byteLength <= RECYCLE_FRACTION * m.capBytes) return f
    return { code: 'memory', message: 'out of memory (QuickJS could not create the error)', poison: 'module' }
  }

  /** A rule whose runtime still has queued jobs after an interrupt gets a fresh runtime. */
  #restartRule(entry: RuleEntry, now: number): void {
    const module = this.#module
    if (entry.sandbox !== undefined) this.#disposeSandbox(entry.sandbox)
    entry.sandbox = undefined
    if (module === undefined || this.#needsRebuild) return
    const created = this.#create(module, entry.spec, now)
    if (created.ok) entry.sandbox = created.value
    else {
      entry.broken = `${RESTART_FAILED}: ${created.error.message}`
      if (created.error.poison === 'module') this.#needsRebuild = true
    }
  }

  #create(module: AccountModule, spec: ResolvedSpec, now: number): Result<RuleSandbox, LoadFailure> {
    const init = { seed: randomInt(1, 2 ** 32 - 1), now, kvGet: (key: string) => this.#kv.get(key) }
    return RuleSandbox.create(module, spec, init)
  }

  #disposeSandbox(sandbox: RuleSandbox): void {
    try {
      sandbox.dispose()
    } catch {
      // QuickJS asserts on leaked handles and after some aborts: the module is not to be trusted.
      this.#counters.disposeFailures++
      this.#needsRebuild = true
    }
  }

  #checkMemory(): void {
    const m = this.#module
    if (m !== undefined && m.memory.buffer.byteLength > RECYCLE_FRACTION * m.capBytes) this.#needsRebuild = true
  }

  #capMb(): number {
    let cap = 0
    for (const entry of this.#rules.values()) cap = Math.max(cap, entry.spec.limits.memoryMb)
    return cap
  }

  async #newModule(capMb: number): Promise<Result<AccountModule, LoadError>> {
    try {
      return ok(await this.#factory.newAccountModule(capMb))
    } catch (e) {
      // WebAssembly.Memory(): could not allocate memory -- the address space is exhausted (notes §2).
      const why = e instanceof Error ? e.message : String(e)
      return err({
        code: 'capacity',
        message: `cannot reserve memory for another account sandbox (${why.replace(/file:\/\/\S+/g, '<host>')}); see --disable-wasm-trap-handler`,
      })
    }
  }
}

const RESTART_FAILED = 'the rule failed to restart'

function missingHandler(kinds: number, handlers: string): string | undefined {
  if (kinds & KIND_MESSAGE && !handlers.includes('m')) return 'onMessage'
  if (kinds & KIND_TIMER && !handlers.includes('t')) return 'onTimer'
  if (kinds & KIND_EVENT && !handlers.includes('e')) return 'onEvent'
  return undefined
}

