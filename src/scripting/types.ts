// The sandbox host's public vocabulary: what a rule is, what goes in, what comes out.

/** Per-rule limits; `resolveLimits` fills in the defaults. */
export interface RuleLimits {
  /** Wall-clock budget per invocation (one input), ms. Default 50. */
  timeMs: number
  /** Publishes per invocation (one input). Default 100. */
  maxPublishes: number
  /**
   * Hard memory cap of the account's WASM module, MiB (default 32). One module serves all rules of
   * an account, so the largest value among its rules wins.
   */
  memoryMb?: number
}

export interface RuleSpec {
  account: string
  /** Letters, digits, `_`, `-`, `.`; the rule's file name inside the sandbox is `NAME.js`. */
  name: string
  /** An ES module exporting `onMessage(msg)`, `onTimer(t)` and/or `onEvent(e)`. */
  source: string
  limits: RuleLimits
}

export type RuleInput =
  | { kind: 'message'; topic: string; payload: string }
  | { kind: 'timer'; at: number }
  /** `event` must survive `JSON.stringify`; the rule receives the parsed copy. */
  | { kind: 'event'; event: unknown }

export type Effect =
  | { kind: 'publish'; topic: string; payload: string; qos: 0 | 1 | 2; retain: boolean }
  | { kind: 'kv.set'; key: string; value: string }
  | { kind: 'kv.delete'; key: string }
  | { kind: 'log'; level: 'info' | 'warn' | 'error'; message: string }

/**
 * Why an invocation produced nothing. Stable: the broker maps them to rule error topics and to
 * the failure policy.
 * - `timeout`: past the wall-clock or tick budget (the rule stays loaded).
 * - `memory`: out of memory; the account's module was rebuilt.
 * - `stack`: stack overflow; the account's module was rebuilt.
 * - `syntax`: only from `load`.
 * - `runtime`: the rule threw (or returned something that cannot be serialized).
 * - `limit`: a host API limit: publishes per invocation, kv key/value/account sizes.
 * - `crashed`: the sandbox itself failed (WASM trap, worker killed by the watchdog, rule lost
 *   while restarting); the host rebuilt what it had to.
 * - `no-handler`: no such rule, or it does not export the handler an input needs.
 */
export type InvokeErrorCode = 'timeout' | 'memory' | 'stack' | 'syntax' | 'runtime' | 'limit' | 'crashed' | 'no-handler'

export interface InvokeError {
  code: InvokeErrorCode
  /** Sanitized: guest text and guest locations (`NAME.js:3:7`) only, never host paths or frames. */
  message: string
}

export type InvokeResult =
  | {
      ok: true
      effects: Effect[]
      /** JSON of the value the handler for the last input returned (resolved, if a promise); undefined if none. */
      returned: string | undefined
    }
  | { ok: false; error: InvokeError }

/**
 * - `syntax`: the source does not parse (with the line and column QuickJS reports).
 * - `invalid`: bad spec, a forbidden import, no handler exported, or the module's top-level code
 *   failed (threw, timed out, ran out of memory).
 * - `capacity`: the process could not reserve memory for another account module.
 */
export interface LoadError {
  code: 'syntax' | 'invalid' | 'capacity'
  message: string
  line?: number
  column?: number
}

export interface SandboxStats {
  /** Account modules thrown away and rebuilt (out of memory, stack, trap, failed dispose, > 75 % full). */
  modulesRecycled: number
  /** Times the watchdog (or a worker crash) replaced the worker thread. */
  workerRestarts: number
  /**
   * Rule sandboxes whose dispose failed (QuickJS asserts on a leaked handle); each one also
   * recycled its module. Should stay 0: anything else is a bug in the host.
   */
  disposeFailures: number
  /** Rules dropped because reloading them after a restart crashed the new worker too. */
  rulesDropped: number
  accounts: number
  rules: number
  /** Requests sent to the worker and not answered yet. */
  inFlight: number
}

/** What closing the worker found: any entry means a handle or an allocation leaked. */
export interface DisposeReport {
  /** A runtime or context whose dispose failed (QuickJS asserts on leaked handles). */
  disposeErrors: string[]
  /** Account modules in which LeakSanitizer found memory still allocated (debug variant only). */
  leaks: string[]
}
