import { err, ok, type Result } from '../../core/result.js'
import { deferredSchema, type JsonSchema } from '../../core/schema.js'

/** Broker events a rule may be triggered by. */
export const RULE_EVENTS = ['client.connected', 'client.disconnected'] as const
export type RuleEvent = (typeof RULE_EVENTS)[number]

export interface RuleManifest {
  readonly name: string
  /** Topic filters, relative to `/<account>/` unless they start with `/`; inside the account's read rights. */
  readonly topics: readonly string[]
  /** Seconds between `onTimer` calls; none when absent. */
  readonly interval: number | undefined
  readonly events: readonly RuleEvent[]
  readonly limits: { readonly timeMs?: number; readonly maxPublishes?: number; readonly memoryMb?: number }
  /** Inputs waiting for the rule at most; the oldest is dropped (and counted) past it. */
  readonly inbox: number
  /** Inputs per sandbox call at most. */
  readonly batch: number
}

export const NAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$'

const schema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: NAME_PATTERN },
    account: { type: 'string' },
    triggers: {
      type: 'object',
      additionalProperties: false,
      properties: {
        topics: { type: 'array', maxItems: 32, items: { type: 'string', minLength: 1, maxLength: 1024 } },
        interval: { type: 'number', minimum: 0.05, maximum: 86_400 },
        events: { type: 'array', items: { enum: [...RULE_EVENTS] } },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        timeMs: { type: 'integer', minimum: 1, maximum: 10_000 },
        maxPublishes: { type: 'integer', minimum: 0, maximum: 10_000 },
        memoryMb: { type: 'integer', minimum: 24, maximum: 1024 },
      },
    },
    inbox: { type: 'integer', minimum: 1, maximum: 100_000 },
    batch: { type: 'integer', minimum: 1, maximum: 1000 },
  },
}

interface RawManifest {
  name?: string
  account?: string
  triggers?: { topics?: string[]; interval?: number; events?: RuleEvent[] }
  limits?: { timeMs?: number; maxPublishes?: number; memoryMb?: number }
  inbox?: number
  batch?: number
}

// Compiled when the first manifest is read: a gateway without rules never needs it.
const validate = deferredSchema<RawManifest>(schema)

export const DEFAULT_INBOX = 1000
export const DEFAULT_BATCH = 100

/**
 * A manifest from JSON (or undefined: a rule run only through `/A/run/NAME`). The name in it,
 * when given, must be the rule's name, and the account, when given, the rule's account.
 */
export function parseManifest(input: unknown, name: string, account: string): Result<RuleManifest, string> {
  if (!new RegExp(NAME_PATTERN).test(name)) return err(`rule name "${name}": letters, digits, '_', '-' and '.', at most 64`)
  const checked = validate(input ?? {})
  if (!checked.ok) return err(`manifest: ${checked.error.join('; ')}`)
  const m = checked.value
  if (m.name !== undefined && m.name !== name) return err(`manifest: name "${m.name}" is not the rule's name "${name}"`)
  if (m.account !== undefined && m.account !== account) return err(`manifest: account "${m.account}" is not the rule's account "${account}"`)
  const t = m.triggers ?? {}
  return ok({
    name,
    topics: t.topics ?? [],
    interval: t.interval,
    events: t.events ?? [],
    limits: m.limits ?? {},
    inbox: m.inbox ?? DEFAULT_INBOX,
    batch: m.batch ?? DEFAULT_BATCH,
  })
}

/** The manifest as stored: what `parseManifest` reads back. */
export function manifestJson(m: RuleManifest): string {
  const triggers: Record<string, unknown> = {}
  if (m.topics.length > 0) triggers.topics = m.topics
  if (m.interval !== undefined) triggers.interval = m.interval
  if (m.events.length > 0) triggers.events = m.events
  return JSON.stringify({ name: m.name, triggers, limits: m.limits, inbox: m.inbox, batch: m.batch })
}

/** A trigger filter as the broker sees it: relative filters lie under the account's namespace. */
export function absoluteFilter(account: string, filter: string): string {
  return filter.startsWith('/') || filter.startsWith('$') ? filter : `/${account}/${filter}`
}
