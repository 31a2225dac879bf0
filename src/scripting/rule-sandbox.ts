// One rule: its own QuickJS runtime and context inside the account's module, the compiled rule,
// and cached handles to the guest entry points.
import { err, ok, type Result } from '../core/result.js'
import { type Failure, failure, guestFailure, hostFailure, type Poison, ruleLocation, sanitize } from './failures.js'
import { type GuestConfig, PRELUDE, PRELUDE_FILE } from './guest.js'
import {
  DESCRIBE_MS,
  initBudgetMs,
  KV_MAX_ACCOUNT_BYTES,
  KV_MAX_KEY_BYTES,
  KV_MAX_VALUE_BYTES,
  MAX_LOG_CHARS,
  MAX_LOGS,
  MAX_STACK_BYTES,
  PRELUDE_BUDGET_MS,
  type ResolvedSpec,
  TICKS_PER_MS,
} from './limits.js'
import type { AccountModule, QuickJSContext, QuickJSHandle, QuickJSRuntime } from './quickjs.js'

/**
 * The per-call budget read by the runtime's one interrupt handler. A handler left armed would
 * interrupt everything after its deadline (notes §3), so it is re-armed for every call and disarmed
 * (deadline in the past) in between.
 */
class Budget {
  #deadline = Number.NEGATIVE_INFINITY
  #ticksLeft = 0
  tripped = false

  arm(ms: number): void {
    this.#deadline = performance.now() + ms
    this.#ticksLeft = Math.max(1, Math.ceil(ms * TICKS_PER_MS))
    this.tripped = false
  }

  /**
   * Our own code (the prelude) is bounded by interpreter ticks alone: it has a fixed cost, and a
   * wall clock would fail a new sandbox merely because the board was busy.
   */
  armTicks(ms: number): void {
    this.arm(ms)
    this.#deadline = Number.POSITIVE_INFINITY
  }

  disarm(): void {
    this.#deadline = Number.NEGATIVE_INFINITY
  }

  readonly interrupt = (): boolean => {
    if (--this.#ticksLeft < 0 || performance.now() > this.#deadline) {
      this.tripped = true
      return true
    }
    return false
  }
}

export interface LoadFailure {
  readonly code: 'syntax' | 'invalid'
  readonly message: string
  readonly line?: number
  readonly column?: number
  readonly poison: Poison
}

export interface SandboxInit {
  readonly seed: number
  readonly now: number
  readonly kvGet: (key: string) => string | undefined
}

type Described = { name: string; message: string; stack: string }

export class RuleSandbox {
  readonly spec: ResolvedSpec
  /** `m`, `t`, `e`: which of onMessage, onTimer, onEvent the rule exports. */
  readonly handlers: string
  readonly #rt: QuickJSRuntime
  readonly #ctx: QuickJSContext
  readonly #batch: QuickJSHandle
  readonly #finish: QuickJSHandle
  readonly #budget: Budget

  private constructor(spec: ResolvedSpec, rt: QuickJSRuntime, ctx: QuickJSContext, entry: { batch: QuickJSHandle; finish: QuickJSHandle; handlers: string }, budget: Budget) {
    this.spec = spec
    this.#rt = rt
    this.#ctx = ctx
    this.#batch = entry.batch
    this.#finish = entry.finish
    this.handlers = entry.handlers
    this.#budget = budget
  }

  /**
   * Compiles and initializes a rule. A `module` poison in the failure means the attempt may have
   * damaged the account module (out of memory, host exception): the caller rebuilds it.
   */
  static create(module: AccountModule, spec: ResolvedSpec, init: SandboxInit): Result<RuleSandbox, LoadFailure> {
    const qjs = module.qjs
    const file = `${spec.name}.js`
    const budget = new Budget()
    let rt: QuickJSRuntime | undefined
    let ctx: QuickJSContext | undefined
    const temps: QuickJSHandle[] = []
    const fail = (f: Omit<LoadFailure, 'poison'>, poison: Poison = 'none'): Result<RuleSandbox, LoadFailure> => {
      // A module about to be thrown away is not worth touching again.
      if (poison !== 'module') {
        try {
          for (const h of temps.reverse()) if (h.alive) h.dispose()
          ctx?.dispose()
          rt?.dispose()
        } catch {
          poison = 'module'
        }
      }
      temps.length = 0
      return err({ ...f, poison })
    }
    try {
      rt = qjs.newRuntime()
      rt.setMaxStackSize(MAX_STACK_BYTES)
      // A soft guard only: in this build it caps single allocations and the count of live ones,
      // not bytes (notes §4). The module's fixed-maximum memory is the real cap.
      rt.setMemoryLimit(Math.floor(module.capBytes / 4))
      rt.setInterruptHandler(budget.interrupt)
      rt.setModuleLoader((name) => ({ error: new Error(`rules cannot import modules (import of '${name}')`) }))
      ctx = rt.newContext()
      // The bootstrap is our code with a fixed cost (~1 ms; far more on the debug build): it gets
      // its own budget, so it does not eat the rule's.
      budget.armTicks(PRELUDE_BUDGET_MS * module.slowdown)
      const c = ctx

      const prelude = c.evalCode(PRELUDE, PRELUDE_FILE)
      if (prelude.error) {
        temps.push(prelude.error)
        const d = describe(c, budget, prelude.error)
        return fail({ code: 'invalid', message: `the sandbox could not start: ${d.message}` }, 'module')
      }
      temps.push(prelude.value)
      const config: GuestConfig = {
        seed: init.seed,
        now: init.now,
        maxPublishes: spec.limits.maxPublishes,
        maxKeyBytes: KV_MAX_KEY_BYTES,
        maxValueBytes: KV_MAX_VALUE_BYTES,
        maxAccountBytes: KV_MAX_ACCOUNT_BYTES,
        maxLogs: MAX_LOGS,
        maxLogChars: MAX_LOG_CHARS,
      }
      const configH = c.newString(JSON.stringify(config))
      temps.push(configH)
      const kvGet = c.newFunction('get', (keyH) => {
        if (c.typeof(keyH) !== 'string') return c.undefined
        const value = init.kvGet(c.getString(keyH))
        return value === undefined ? c.undefined : c.newString(value)
      })
      temps.push(kvGet)
      const install = c.callFunction(prelude.value, c.undefined, configH, kvGet)
      if (install.error) {
        temps.push(install.error)
        const d = describe(c, budget, install.error)
        return fail({ code: 'invalid', message: `the sandbox could not start: ${d.message}` }, budget.tripped ? 'none' : 'module')
      }
      temps.push(install.value)

      budget.arm(initBudgetMs(spec.limits.timeMs))
      const evaluated = c.evalCode(spec.source, file, { type: 'module' })
      if (evaluated.error) {
        temps.push(evaluated.error)
        if (budget.tripped) return fail({ code: 'invalid', message: timeoutText('the rule module', spec) })
        const d = describe(c, budget, evaluated.error)
        const where = ruleLocation(d.stack, file)
        const poison = loadPoison(d)
        if (d.name === 'SyntaxError') {
          const text = sanitize(`SyntaxError: ${d.message}${where === undefined ? '' : ` (at ${file}:${where.line}:${where.column})`}`)
          return fail(where === undefined ? { code: 'syntax', message: text } : { code: 'syntax', message: text, line: where.line, column: where.column })
        }
        return fail({ code: 'invalid', message: guestFailure(d.name, d.message, d.stack, file).message }, poison)
      }
      temps.push(evaluated.value)
      // Top-level await (or promise jobs started at top level) settle here, within the init budget.
      let namespace = evaluated.value
      if (rt.hasPendingJob()) {
        const jobs = rt.executePendingJobs()
        if (jobs.error) jobs.error.dispose()
      }
      if (budget.tripped) return fail({ code: 'invalid', message: timeoutText('the rule module', spec) })
      const state = c.getPromiseState(evaluated.value)
      if (state.type === 'pending') return fail({ code: 'invalid', message: 'the rule module never finished loading (top-level await that never settles)' })
      if (state.type === 'rejected') {
        temps.push(state.error)
        const d = describe(c, budget, state.error)
        return fail({ code: 'invalid', message: guestFailure(d.name, d.message, d.stack, file).message }, loadPoison(d))
      }
      if (!state.notAPromise) {
        temps.push(state.value)
        namespace = state.value
      }

      const installed = c.callFunction(install.value, c.undefined, namespace)
      if (installed.error) {
        temps.push(installed.error)
        const d = describe(c, budget, installed.error)
        return fail({ code: 'invalid', message: sanitize(d.message) }, loadPoison(d))
      }
      temps.push(installed.value)
      const batch = c.getProp(installed.value, 0)
      const finish = c.getProp(installed.value, 1)
      const handlersH = c.getProp(installed.value, 2)
      temps.push(handlersH, batch, finish)
      const handlers = c.getString(handlersH)
      if (rt.hasPendingJob()) return fail({ code: 'invalid', message: 'the rule module left promise jobs that could not run' })
      temps.length -= 2 // batch and finish live as long as the sandbox
      for (const h of temps.reverse()) if (h.alive) h.dispose()
      temps.length = 0
      budget.disarm()
      return ok(new RuleSandbox(spec, rt, c, { batch, finish, handlers }, budget))
    } catch (e) {
      const f = hostFailure(e)
      return fail({ code: 'invalid', message: `the rule crashed the sandbox while loading: ${f.message}` }, 'module')
    } finally {
      budget.disarm()
    }
  }

  /**
   * Runs one batch (the JSON of `guest.ts`) and returns the guest's output JSON. Throws only when
   * the library or WASM does (the caller treats that as a poisoned module).
   */
  run(batchJson: string, budgetMs: number): Result<string, Failure> {
    const budget = this.#budget
    budget.arm(budgetMs)
    try {
      let out = this.#call(this.#batch, batchJson)
      if (out.ok && (out.value === '' || this.#rt.hasPendingJob())) {
        // Promise jobs run only when the host asks (notes §7.8): async handlers settle here, under
        // the same budget. An endless job loop is interrupted like any other loop.
        const jobs = this.#rt.executePendingJobs()
        if (jobs.error) jobs.error.dispose()
        out = budget.tripped ? out : this.#call(this.#finish, undefined)
      }
      if (budget.tripped) {
        // Jobs still queued after an interrupt would run during the next call: start over.
        const poison: Poison = this.#rt.hasPendingJob() ? 'rule' : 'none'
        return err(failure('timeout', timeoutText('the rule', this.spec, budgetMs), poison))
      }
      if (!out.ok) return err(this.#settleJobs(out.error))
      if (out.value === '') return err(failure('runtime', 'an async handler never settled'))
      return out
    } finally {
      budget.disarm()
    }
  }

  /**
   * After a failed call, jobs it queued must not run during the next one (their publishes would
   * land in the next batch): run them now, into the failed batch's discarded effects, or start
   * the rule over if they do not finish.
   */
  #settleJobs(f: Failure): Failure {
    if (f.poison !== 'none' || !this.#rt.hasPendingJob()) return f
    const jobs = this.#rt.executePendingJobs()
    if (jobs.error) jobs.error.dispose()
    return this.#budget.tripped || this.#rt.hasPendingJob() ? { ...f, poison: 'rule' } : f
  }

  #call(fn: QuickJSHandle, arg: string | undefined): Result<string, Failure> {
    const ctx = this.#ctx
    const argH = arg === undefined ? undefined : ctx.newString(arg)
    let res: ReturnType<QuickJSContext['callFunction']>
    try {
      res = argH === undefined ? ctx.callFunction(fn, ctx.undefined) : ctx.callFunction(fn, ctx.undefined, argH)
    } finally {
      argH?.dispose()
    }
    if (res.error) {
      const error = res.error
      if (this.#budget.tripped) {
        error.dispose()
        return err(failure('timeout', timeoutText('the rule', this.spec)))
      }
      const d = describe(ctx, this.#budget, error)
      // dump() disposes a promise handle itself (notes §7.2).
      if (error.alive) error.dispose()
      return err(guestFailure(d.name, d.message, d.stack, `${this.spec.name}.js`))
    }
    const value = res.value
    try {
      return ctx.typeof(value) === 'string' ? ok(ctx.getString(value)) : err(failure('runtime', 'the rule corrupted the sandbox API'))
    } finally {
      value.dispose()
    }
  }

  /** Throws when QuickJS refuses (a leaked handle, a poisoned module): the caller recycles the module. */
  dispose(): void {
    this.#batch.dispose()
    this.#finish.dispose()
    this.#ctx.dispose()
    this.#rt.dispose()
  }
}

function timeoutText(what: string, spec: ResolvedSpec, budgetMs?: number): string {
  return `${what} ran past its time limit (${budgetMs ?? spec.limits.timeMs} ms)`
}

function loadPoison(d: Described): Poison {
  return guestFailure(d.name, d.message, '', '').poison
}

/**
 * Reads name, message and stack of a thrown value. `dump` may run guest code (getters, toJSON),
 * so it gets a small budget of its own; the original budget's verdict is kept.
 */
function describe(ctx: QuickJSContext, budget: Budget, h: QuickJSHandle): Described {
  const tripped = budget.tripped
  budget.arm(DESCRIBE_MS)
  try {
    const v: unknown = ctx.dump(h)
    if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>
      return { name: text(o.name, 'Error'), message: text(o.message, ''), stack: text(o.stack, '') }
    }
    return { name: 'Error', message: `uncaught ${String(v)}`, stack: '' }
  } catch {
    return { name: 'Error', message: 'uncaught exception that cannot be printed', stack: '' }
  } finally {
    budget.tripped = tripped
  }
}

function text(v: unknown, fallback: string): string {
  return typeof v === 'string' ? v : fallback
}
