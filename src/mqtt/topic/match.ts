// The reference matcher. It is deliberately naive (split, compare level by level) so it can be
// read against the spec; the trie and retained tree are tested for exact agreement with it.
// Inputs are assumed valid (see validate.ts); a '#' that is not last is treated as matching
// everything below it, which valid filters never exercise.

/**
 * True when `topic` (a topic name) matches `filter` (a topic filter without `$share/`).
 * '+' matches exactly one level, possibly empty [MQTT-4.7.1-3]; '#' matches the parent level
 * and any number of child levels [MQTT-4.7.1-2]; a leading wildcard never matches a topic
 * starting with '$' [MQTT-4.7.2-1]; comparison is exact, without normalisation [MQTT-4.7.3-4].
 */
export function matchesFilter(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    if (level === '#') return true
    if (i >= t.length) return false
    if (level !== '+' && level !== t[i]) return false
  }
  return f.length === t.length
}
