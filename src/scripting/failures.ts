// Turning whatever went wrong into a stable code and a message safe to show a rule author.
import { isWasmTrap } from './quickjs.js'
import type { InvokeErrorCode } from './types.js'

/**
 * What a failure did to the sandbox. `rule`: rebuild that rule's runtime (jobs left queued after an
 * interrupt). `module`: rebuild the whole account module (out of memory, stack overflow, WASM
 * trap: QuickJS may be half-unwound, notes §4-§5).
 */
export type Poison = 'none' | 'rule' | 'module'

export interface Failure {
  readonly code: InvokeErrorCode
  readonly message: string
  readonly poison: Poison
}

export function failure(code: InvokeErrorCode, message: string, poison: Poison = 'none'): Failure {
  return { code, message, poison }
}

const MAX_MESSAGE = 1200

/**
 * Host paths never reach a rule author: guest text is the rule's own, but a library message could
 * carry a file URL or a node_modules path. MQTT topics look like paths, so only those two are cut.
 */
export function sanitize(text: string): string {
  const cleaned = text.replace(/file:\/\/\S+/g, '<host>').replace(/\/\S*node_modules\S*/g, '<host>')
  return cleaned.length > MAX_MESSAGE ? `${cleaned.slice(0, MAX_MESSAGE)}...` : cleaned
}

export interface Location {
  readonly line: number
  readonly column: number
}

/** The first stack frame inside the rule's own file (QuickJS: `at f (calc.js:3:7)` or `at calc.js:3:7`). */
export function ruleLocation(stack: string, file: string): Location | undefined {
  for (const frame of stack.split('\n')) {
    const at = frame.lastIndexOf(`${file}:`)
    if (at < 0) continue
    const prev = frame[at - 1]
    if (prev !== undefined && prev !== ' ' && prev !== '(') continue
    const m = /^(\d+):(\d+)/.exec(frame.slice(at + file.length + 1))
    if (m?.[1] !== undefined && m[2] !== undefined) return { line: Number(m[1]), column: Number(m[2]) }
  }
  return undefined
}

/** An exception raised inside the guest (caught by the wrapper or escaping it). */
export function guestFailure(name: string, message: string, stack: string, file: string): Failure {
  const where = ruleLocation(stack, file)
  const text = sanitize(`${name}: ${message}${where === undefined ? '' : ` (at ${file}:${where.line}:${where.column})`}`)
  // QuickJS's own wording; the JSON parser reports its overflow as a SyntaxError. A rule that
  // throws these texts itself only gets its own module rebuilt.
  if (message === 'out of memory') return failure('memory', text, 'module')
  if (message === 'stack overflow' || message === 'Maximum call stack size exceeded') return failure('stack', text, 'module')
  if (name === 'LimitError') return failure('limit', text)
  return failure('runtime', text)
}

/**
 * An exception thrown by the library or the engine on the host side of a call: a native V8 stack
 * overflow through the WASM frames, a WASM trap or abort, a QuickJS assertion. The module is
 * poisoned in every case; the message is fixed text, never the host's.
 */
export function hostFailure(e: unknown): Failure {
  if (e instanceof RangeError && /call stack/i.test(e.message)) {
    return failure('stack', 'stack overflow (native stack); the account sandbox was rebuilt', 'module')
  }
  if (isWasmTrap(e)) {
    return failure('crashed', 'the sandbox aborted (WebAssembly trap); the account sandbox was rebuilt', 'module')
  }
  if (e instanceof RangeError) return failure('memory', 'out of memory in the sandbox host; the account sandbox was rebuilt', 'module')
  return failure('crashed', 'the sandbox failed; the account sandbox was rebuilt', 'module')
}
