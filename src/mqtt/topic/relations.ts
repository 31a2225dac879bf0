/**
 * Relations between two filters, for deciding whether a subscription lies wholly inside
 * (or partly overlaps) a permission filter. `$` topics are never matched by a leading
 * wildcard [MQTT-4.7.2-1], so a leading wildcard does not cover a `$` first level.
 */

function dollarBlocked(wild: string[], other: string[]): boolean {
  const w = wild[0]
  const o = other[0]
  return (w === '+' || w === '#') && o !== undefined && o.startsWith('$')
}

/** True when every topic matched by `inner` is also matched by `outer`. */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/')
  const i = inner.split('/')
  if (dollarBlocked(o, i)) return false
  // A leading wildcard in `inner` reaches no `$` topic, so a `$` literal in `outer` cannot help or hurt it.
  for (let k = 0; k < o.length; k++) {
    const ol = o[k]
    const il = i[k]
    if (ol === '#') return true
    if (il === undefined) return false
    if (il === '#') {
      // Inner's '#' also matches its parent (k levels), which `+/#` in outer misses, unless no
      // parent is a topic name: '#' has none, '/#' only '' [MQTT-4.7.3-1].
      const noParent = k === 0 || (k === 1 && i[0] === '')
      return noParent && ol === '+' && o[k + 1] === '#' && o.length === k + 2
    }
    if (ol === '+') continue
    if (il === '+' || il !== ol) return false
  }
  return o.length === i.length
}

/** True when at least one topic name is matched by both filters. */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split('/')
  const y = b.split('/')
  if (dollarBlocked(x, y) || dollarBlocked(y, x)) return false
  const n = Math.max(x.length, y.length)
  for (let k = 0; k < n; k++) {
    const xl = x[k]
    const yl = y[k]
    if (xl === '#' || yl === '#') {
      // Against a filter that ended here, '#' meets it only at its parent: k levels, and a
      // single empty level ('/#' against '+') is no topic name [MQTT-4.7.3-1].
      const ended = xl === undefined || yl === undefined
      return !(ended && k === 1 && (x[0] === '' || y[0] === ''))
    }
    if (xl === undefined || yl === undefined) return false
    if (xl === '+' || yl === '+') continue
    if (xl !== yl) return false
  }
  return true
}
