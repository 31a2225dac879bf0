// Topic name and filter validation (MQTT 3.1.1 section 4.7, MQTT 5 section 4.8.2).
// Each validator returns null when the input is acceptable, else a short reason; the caller
// maps that reason to a protocol error, so nothing here throws.

const SLASH = 0x2f
const PLUS = 0x2b
const HASH = 0x23
const NUL = 0x00

const SHARE_PREFIX = '$share/'

/** A subscription filter once the `$share/<group>/` prefix (if any) has been taken apart. */
export type ParsedFilter =
  | { readonly kind: 'plain'; readonly filter: string }
  | { readonly kind: 'shared'; readonly group: string; readonly filter: string }
  | { readonly kind: 'invalid'; readonly reason: string }

/**
 * Checks a PUBLISH topic name (or a will topic). `maxLength` is in UTF-8 bytes because that is
 * what the wire limit [MQTT-4.7.3-3] and operator-configured limits are about.
 */
export function validTopicName(topic: string, maxLength: number, maxLevels: number): string | null {
  // [MQTT-4.7.3-1]
  if (topic.length === 0) return 'empty topic'
  // A UTF-16 code unit encodes to at most 3 UTF-8 bytes, so short strings skip byteLength.
  if (topic.length * 3 > maxLength && Buffer.byteLength(topic, 'utf8') > maxLength) return 'too long'
  let levels = 1
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i)
    if (c === SLASH) {
      levels++
    } else if (c === PLUS || c === HASH) {
      // [MQTT-4.7.1-1]
      return 'wildcard in topic name'
    } else if (c === NUL) {
      // [MQTT-4.7.3-2]
      return 'contains U+0000'
    }
  }
  if (levels > maxLevels) return 'too many levels'
  return null
}

/**
 * Checks a subscription topic filter without any `$share/` prefix (use `parseShared` first).
 * Wildcards must fill a whole level [MQTT-4.7.1-2], [MQTT-4.7.1-3]; '#' must also be last.
 */
export function validTopicFilter(filter: string, maxLength: number, maxLevels: number): string | null {
  // [MQTT-4.7.3-1]
  if (filter.length === 0) return 'empty topic filter'
  if (filter.length * 3 > maxLength && Buffer.byteLength(filter, 'utf8') > maxLength) return 'too long'
  let levels = 1
  const last = filter.length - 1
  for (let i = 0; i <= last; i++) {
    const c = filter.charCodeAt(i)
    if (c === SLASH) {
      levels++
    } else if (c === PLUS) {
      // [MQTT-4.7.1-3]
      if (!aloneInLevel(filter, i)) return "'+' not alone in its level"
    } else if (c === HASH) {
      // [MQTT-4.7.1-2]
      if (!aloneInLevel(filter, i)) return "'#' not alone in its level"
      if (i !== last) return "'#' not last level"
    } else if (c === NUL) {
      // [MQTT-4.7.3-2]
      return 'contains U+0000'
    }
  }
  if (levels > maxLevels) return 'too many levels'
  return null
}

function aloneInLevel(s: string, i: number): boolean {
  return (i === 0 || s.charCodeAt(i - 1) === SLASH) && (i === s.length - 1 || s.charCodeAt(i + 1) === SLASH)
}

/**
 * Splits `$share/<group>/<filter>` into its parts [MQTT-4.8.2-1], [MQTT-4.8.2-2]. Only the
 * group is checked here; the caller still runs `validTopicFilter` on the returned filter,
 * which keeps one source of truth for filter rules whether or not the subscription is shared.
 */
export function parseShared(filter: string): ParsedFilter {
  if (!filter.startsWith(SHARE_PREFIX)) return { kind: 'plain', filter }
  const groupStart = SHARE_PREFIX.length
  const slash = filter.indexOf('/', groupStart)
  // No '/' after the group means the mandatory filter part is missing [MQTT-4.8.2-2].
  if (slash === -1) return { kind: 'invalid', reason: 'shared subscription without topic filter' }
  if (slash === groupStart) return { kind: 'invalid', reason: 'empty share name' }
  const group = filter.slice(groupStart, slash)
  for (let i = 0; i < group.length; i++) {
    const c = group.charCodeAt(i)
    if (c === PLUS || c === HASH) return { kind: 'invalid', reason: 'wildcard in share name' }
    if (c === NUL) return { kind: 'invalid', reason: 'contains U+0000' }
  }
  const inner = filter.slice(slash + 1)
  if (inner.length === 0) return { kind: 'invalid', reason: 'shared subscription without topic filter' }
  return { kind: 'shared', group, filter: inner }
}
