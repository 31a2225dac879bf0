// Decoding what a batch returned. The guest wrapper already checked all of this, but the rule runs
// in the same context and could have corrupted it, so nothing is taken on trust here.
import { err, ok, type Result } from '../core/result.js'
import { type Failure, failure, guestFailure } from './failures.js'
import { MAX_LOG_CHARS } from './limits.js'
import type { Effect } from './types.js'

export interface BatchOutput {
  readonly effects: Effect[]
  readonly returned: string | undefined
}

const MAX_TOPIC_BYTES = 65535
const corrupted = (): Result<BatchOutput, Failure> => err(failure('runtime', 'the rule corrupted the sandbox API (malformed effects)'))

function isTopic(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && !/[+#\0]/.test(v) && Buffer.byteLength(v) <= MAX_TOPIC_BYTES
}

/**
 * @param json the string the guest returned
 * @param file the rule's file name, to find its frames in a guest stack
 * @param maxPublishes publishes allowed in the whole batch (per input x inputs)
 */
export function decodeOutput(json: string, file: string, maxPublishes: number): Result<BatchOutput, Failure> {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch {
    return corrupted()
  }
  if (typeof parsed !== 'object' || parsed === null) return corrupted()
  const o = parsed as Record<string, unknown>
  if (Array.isArray(o.x)) {
    const [name, message, stack] = o.x as unknown[]
    if (typeof name !== 'string' || typeof message !== 'string' || typeof stack !== 'string') return corrupted()
    return err(guestFailure(name, message, stack, file))
  }
  const r = o.r
  if (!Array.isArray(o.e) || (r !== null && typeof r !== 'string')) return corrupted()
  const effects: Effect[] = []
  let publishes = 0
  for (const t of o.e as unknown[]) {
    if (!Array.isArray(t)) return corrupted()
    const e = decodeEffect(t as unknown[])
    if (e === undefined) return corrupted()
    if (e.kind === 'publish' && ++publishes > maxPublishes) {
      return err(failure('limit', `publish: more than ${maxPublishes} publishes in one batch`))
    }
    effects.push(e)
  }
  return ok({ effects, returned: r ?? undefined })
}

function decodeEffect(t: unknown[]): Effect | undefined {
  const [kind, a, b, c, d] = t
  switch (kind) {
    case 0:
      if (!isTopic(a) || typeof b !== 'string' || (c !== 0 && c !== 1 && c !== 2) || typeof d !== 'boolean') return undefined
      return { kind: 'publish', topic: a, payload: b, qos: c, retain: d }
    case 1:
      return typeof a === 'string' && a.length > 0 && typeof b === 'string' ? { kind: 'kv.set', key: a, value: b } : undefined
    case 2:
      return typeof a === 'string' && a.length > 0 ? { kind: 'kv.delete', key: a } : undefined
    case 3:
      if ((a !== 'info' && a !== 'warn' && a !== 'error') || typeof b !== 'string') return undefined
      return { kind: 'log', level: a, message: b.length > MAX_LOG_CHARS + 3 ? `${b.slice(0, MAX_LOG_CHARS)}...` : b }
    default:
      return undefined
  }
}
