// Registered devices (the IoTtalk model): what a registration says, and the topics a device
// gets. Every topic of a device lies under its account: /<account>/devices/<id>/...
import { err, ok, type Result } from '../core/result.js'

export type FeatureKind = 'idf' | 'odf'

export interface FeatureSpec {
  readonly kind: FeatureKind
  readonly name: string
  /** The value types (units) of the feature's data, as registered: ["dB"], ["x", "y", "z"]. */
  readonly types: readonly string[]
}

/** A registration body, checked. */
export interface Registration {
  readonly name: string
  readonly features: readonly FeatureSpec[]
  readonly acceptProtos: readonly string[]
  readonly profile: Readonly<Record<string, unknown>>
}

export type Presence = 'online' | 'offline'

export interface DeviceRecord extends Registration {
  readonly id: string
  readonly account: string
  /** Issued at each registration; only presence messages that carry it count. */
  readonly rev: string
  readonly registeredAt: number
  readonly presence: Presence
  /** When the presence last changed; undefined before the device was ever seen. */
  readonly presenceAt: number | undefined
}

/** What one account may keep: a bound on what a tenant can make perch store and run. */
export const LIMITS = {
  devices: 1000,
  functions: 1000,
  graphs: 100,
  /** Inputs or outputs of one graph (a rule takes at most 32 trigger topics). */
  links: 32,
} as const

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const FEATURE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/
const MAX_FEATURES = 64
const MAX_TYPES = 16
const MAX_NAME = 128
const MAX_PROFILE_BYTES = 8192

/** A device id is a UUID; it is kept lower-case. */
export function deviceId(input: string): string | undefined {
  return UUID.test(input) ? input.toLowerCase() : undefined
}

/** The topics of one device. */
export function deviceTopics(account: string, id: string) {
  const base = `/${account}/devices/${id}`
  return {
    /** Device -> perch: presence (retained) and answers to signals. */
    up: `${base}/ctrl/up`,
    /** Perch -> device: CONNECT and DISCONNECT. */
    down: `${base}/ctrl/down`,
    /** Perch's own retained record of the device's presence. */
    state: `${base}/state`,
    feature: (kind: FeatureKind, name: string): string => `${base}/${kind}/${name}`,
  }
}

/**
 * Reads a registration body as the reference sends it:
 * `{"name": "BetaCat", "idf_list": [["meow", ["dB"]]], "odf_list": [...], "accept_protos": ["mqtt"], "profile": {...}}`.
 * A feature may also be given as a bare name (no types).
 */
export function parseRegistration(body: unknown): Result<Registration, string> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return err('the body must be a JSON object')
  const b = body as Record<string, unknown>
  const known = new Set(['name', 'idf_list', 'odf_list', 'accept_protos', 'profile', 'id'])
  const unknown = Object.keys(b).filter((k) => !known.has(k))
  if (unknown.length > 0) return err(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}`)
  if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > MAX_NAME) return err(`"name" must be a non-empty string of at most ${MAX_NAME} characters`)
  const features: FeatureSpec[] = []
  for (const kind of ['idf', 'odf'] as const) {
    const list = b[`${kind}_list`]
    if (list === undefined) continue
    const parsed = parseFeatures(kind, list)
    if (!parsed.ok) return parsed
    features.push(...parsed.value)
  }
  if (features.length === 0) return err('a device needs at least one feature in "idf_list" or "odf_list"')
  let acceptProtos: string[] = ['mqtt']
  if (b.accept_protos !== undefined) {
    if (!Array.isArray(b.accept_protos) || !b.accept_protos.every((p) => typeof p === 'string')) return err('"accept_protos" must be an array of strings')
    if (!b.accept_protos.includes('mqtt')) return err(`"accept_protos" must include "mqtt", the protocol perch serves devices with (got ${JSON.stringify(b.accept_protos)})`)
    acceptProtos = [...new Set(b.accept_protos as string[])]
  }
  let profile: Record<string, unknown> = {}
  if (b.profile !== undefined) {
    if (typeof b.profile !== 'object' || b.profile === null || Array.isArray(b.profile)) return err('"profile" must be a JSON object')
    if (JSON.stringify(b.profile).length > MAX_PROFILE_BYTES) return err(`"profile" is larger than ${MAX_PROFILE_BYTES} bytes`)
    profile = b.profile as Record<string, unknown>
  }
  return ok({ name: b.name, features, acceptProtos, profile })
}

function parseFeatures(kind: FeatureKind, list: unknown): Result<FeatureSpec[], string> {
  const key = `${kind}_list`
  if (!Array.isArray(list)) return err(`"${key}" must be an array of [name, [types...]]`)
  if (list.length > MAX_FEATURES) return err(`"${key}" has more than ${MAX_FEATURES} features`)
  const out: FeatureSpec[] = []
  for (const [i, item] of list.entries()) {
    const [name, types] = typeof item === 'string' ? [item, []] : Array.isArray(item) ? [item[0], item[1] ?? []] : [undefined, undefined]
    if (typeof name !== 'string' || (Array.isArray(item) && item.length > 2)) return err(`${key}[${i}] must be a name or [name, [types...]]`)
    if (!FEATURE_NAME.test(name)) return err(`${key}[${i}]: feature name "${name}" must be letters, digits, '_', '-' or '.' (at most 64)`)
    if (!Array.isArray(types) || types.length > MAX_TYPES || !types.every((t) => typeof t === 'string' && t.length > 0 && t.length <= 64)) {
      return err(`${key}[${i}]: the types of "${name}" must be an array of at most ${MAX_TYPES} non-empty strings`)
    }
    if (out.some((f) => f.name === name)) return err(`${key}: feature "${name}" is listed twice`)
    out.push({ kind, name, types: types as string[] })
  }
  return ok(out)
}

/** The answer to a registration: where everything is (the reference's `ctrl_chans` and `rev`). */
export function registrationAnswer(d: DeviceRecord): Record<string, unknown> {
  const t = deviceTopics(d.account, d.id)
  const topics = (kind: FeatureKind): Record<string, string> =>
    Object.fromEntries(d.features.filter((f) => f.kind === kind).map((f) => [f.name, t.feature(kind, f.name)]))
  return {
    state: 'ok',
    id: d.id,
    account: d.account,
    name: d.name,
    rev: d.rev,
    ctrl_chans: [t.up, t.down],
    topics: { idf: topics('idf'), odf: topics('odf') },
    presence_topic: t.state,
  }
}

/** A device as `list` and the HTTP API show it. */
export function describeDevice(d: DeviceRecord): Record<string, unknown> {
  const t = deviceTopics(d.account, d.id)
  const pair = (kind: FeatureKind) => d.features.filter((f) => f.kind === kind).map((f) => [f.name, f.types])
  return {
    id: d.id,
    account: d.account,
    name: d.name,
    idf_list: pair('idf'),
    odf_list: pair('odf'),
    accept_protos: d.acceptProtos,
    profile: d.profile,
    presence: d.presence,
    presence_at: d.presenceAt === undefined ? null : new Date(d.presenceAt).toISOString(),
    registered_at: new Date(d.registeredAt).toISOString(),
    ctrl_chans: [t.up, t.down],
  }
}
