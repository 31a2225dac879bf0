// Every number the sandbox enforces, in one place, with the reason for each.
import { err, ok, type Result } from '../core/result.js'
import type { LoadError, RuleLimits, RuleSpec } from './types.js'

export const DEFAULT_TIME_MS = 50
export const DEFAULT_MAX_PUBLISHES = 100
export const DEFAULT_MEMORY_MB = 32
/** The image needs 16 MiB and a module is recycled above 75 %: below 24 MiB it would recycle forever. */
export const MIN_MEMORY_MB = 24
export const MAX_MEMORY_MB = 1024
export const MAX_TIME_MS = 10_000
export const MAX_PUBLISHES_LIMIT = 10_000
export const MAX_SOURCE_BYTES = 256 * 1024

/** A module above this share of its cap is rebuilt: WASM memory never shrinks. */
export const RECYCLE_FRACTION = 0.75
/** QuickJS's own stack check; the worker's 8 MB native stack holds ~32x this (notes §5). */
export const MAX_STACK_BYTES = 256 * 1024
/**
 * Interrupt-handler calls per ms of budget. QuickJS calls the handler every ~10,000 interpreter
 * ticks, ~20 times per ms in a tight loop on an idle x86 core: the tick budget is a
 * load-independent ceiling that matches the wall budget there, so a busy box trips the clock first.
 */
export const TICKS_PER_MS = 20
/** Budget for a module's top-level code, and for describing an error after a call. */
export const INIT_MIN_MS = 100
export const PRELUDE_BUDGET_MS = 250
export const DESCRIBE_MS = 20

export const KV_MAX_KEY_BYTES = 256
export const KV_MAX_VALUE_BYTES = 64 * 1024
export const KV_MAX_ACCOUNT_BYTES = 1024 * 1024
/** Log lines per invocation (one input) and characters per line; the rest is dropped, not failed. */
export const MAX_LOGS = 100
export const MAX_LOG_CHARS = 4096

export const DEFAULT_HEARTBEAT_MS = 1000

export interface ResolvedLimits {
  readonly timeMs: number
  readonly maxPublishes: number
  readonly memoryMb: number
}

export interface ResolvedSpec {
  readonly account: string
  readonly name: string
  readonly source: string
  readonly limits: ResolvedLimits
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/

function inRange(v: number, min: number, max: number): boolean {
  return Number.isInteger(v) && v >= min && v <= max
}

export function resolveLimits(limits: Partial<RuleLimits>): Result<ResolvedLimits, string> {
  const timeMs = limits.timeMs ?? DEFAULT_TIME_MS
  const maxPublishes = limits.maxPublishes ?? DEFAULT_MAX_PUBLISHES
  const memoryMb = limits.memoryMb ?? DEFAULT_MEMORY_MB
  if (!inRange(timeMs, 1, MAX_TIME_MS)) return err(`limits.timeMs must be an integer from 1 to ${MAX_TIME_MS}`)
  if (!inRange(maxPublishes, 0, MAX_PUBLISHES_LIMIT)) return err(`limits.maxPublishes must be an integer from 0 to ${MAX_PUBLISHES_LIMIT}`)
  if (!inRange(memoryMb, MIN_MEMORY_MB, MAX_MEMORY_MB)) return err(`limits.memoryMb must be an integer from ${MIN_MEMORY_MB} to ${MAX_MEMORY_MB}`)
  return ok({ timeMs, maxPublishes, memoryMb })
}

export function resolveSpec(spec: RuleSpec): Result<ResolvedSpec, LoadError> {
  const invalid = (message: string): Result<ResolvedSpec, LoadError> => err({ code: 'invalid', message })
  if (typeof spec.account !== 'string' || spec.account.length === 0 || spec.account.length > 256 || spec.account.includes('\0')) {
    return invalid('account must be a non-empty string of at most 256 characters')
  }
  if (typeof spec.name !== 'string' || !NAME.test(spec.name)) {
    return invalid('rule name must be 1-128 letters, digits, "_", "-" or "." and not start with "-" or "."')
  }
  if (typeof spec.source !== 'string') return invalid('source must be a string')
  if (Buffer.byteLength(spec.source) > MAX_SOURCE_BYTES) return invalid(`source is larger than ${MAX_SOURCE_BYTES} bytes`)
  const limits = resolveLimits(spec.limits)
  if (!limits.ok) return invalid(limits.error)
  return ok({ account: spec.account, name: spec.name, source: spec.source, limits: limits.value })
}

/** Wall budget of a batch: per input, capped so a batch always answers well within the heartbeat. */
export function batchBudgetMs(timeMs: number, inputs: number, capMs: number): number {
  return Math.max(timeMs, Math.min(timeMs * inputs, capMs))
}

export function initBudgetMs(timeMs: number): number {
  return Math.max(INIT_MIN_MS, 2 * timeMs)
}

/** The watchdog's patience: no reply for this long means a native call is stuck. */
export function heartbeatMs(configured: number, largestTimeMs: number): number {
  return Math.max(configured, 4 * largestTimeMs, 2 * initBudgetMs(largestTimeMs))
}
