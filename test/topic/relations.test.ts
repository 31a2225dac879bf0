// filterCovers / filtersOverlap against brute force over the reference matcher.
//
// Why topics of at most 4 levels are enough: every filter here has at most 3 levels. A filter
// without '#' matches only topics of its own length (<= 3). A filter ending in '#' at index k
// (k <= 2) matches a topic by its first k levels only. So whether a filter of <= 3 levels
// matches a topic of 5 or more levels is decided by that topic's first 4 levels, and cutting a
// topic to 4 levels changes no match of any such filter: every witness topic has a witness of
// at most 4 levels.
//
// Why the literal alphabet is enough: a topic level that is none of 'a', 'b', '$x', '' can be
// replaced by one of 'a', 'b', '' that the other filter does not name at that position (a
// filter names one literal per level), without changing what either filter matches.
//
// The empty topic is not a topic name [MQTT-4.7.3-1]: it is never generated, so a filter pair
// whose only common topic would be '' does not overlap.
import t from 'tap'
import { matchesFilter } from '../../src/mqtt/topic/match.js'
import { filterCovers, filtersOverlap } from '../../src/mqtt/topic/relations.js'
import { validTopicFilter, validTopicName } from '../../src/mqtt/topic/validate.js'
import { mulberry32, pick } from './fixtures/random.js'

const TOPIC_LEVELS = ['a', 'b', '$x', ''] as const
const FILTER_LEVELS = ['a', 'b', '$x', '+', '#', ''] as const
const MAX_FILTER_LEVELS = 3
const MAX_TOPIC_LEVELS = MAX_FILTER_LEVELS + 1

/**
 * Every string of 1 to `maxLevels` levels from `alphabet` joined with '/', in depth-first order;
 * never the empty string, and nothing after a '#' level.
 */
function allJoined(alphabet: readonly string[], maxLevels: number): string[] {
  const out: string[] = []
  const grow = (levels: string[]): void => {
    if (levels.length > 0) {
      const joined = levels.join('/')
      if (joined !== '') out.push(joined)
    }
    if (levels.length === maxLevels || levels[levels.length - 1] === '#') return
    for (const l of alphabet) grow([...levels, l])
  }
  grow([])
  return out
}

const allTopics = (): string[] => allJoined(TOPIC_LEVELS, MAX_TOPIC_LEVELS)

/** '#' only as the last level; never the empty filter. */
const allFilters = (): string[] => allJoined(FILTER_LEVELS, MAX_FILTER_LEVELS)

function randomFilter(rng: () => number): string {
  for (;;) {
    const n = 1 + Math.floor(rng() * MAX_FILTER_LEVELS)
    const levels: string[] = []
    for (let i = 0; i < n; i++) {
      const level = pick(rng, FILTER_LEVELS)
      levels.push(level)
      if (level === '#') break
    }
    const filter = levels.join('/')
    if (filter !== '') return filter
  }
}

const topics = allTopics()

/** The set of generated topics a filter matches, as a bitset over `topics`. */
class TopicSet {
  readonly bits: Uint32Array
  constructor(filter: string) {
    this.bits = new Uint32Array(Math.ceil(topics.length / 32))
    topics.forEach((topic, i) => {
      if (matchesFilter(filter, topic)) this.bits[i >>> 5] = (this.bits[i >>> 5] ?? 0) | (1 << (i & 31))
    })
  }
  /** True when every topic in `inner` is in this set. */
  covers(inner: TopicSet): boolean {
    return inner.bits.every((w, i) => (w & ~(this.bits[i] ?? 0)) === 0)
  }
  meets(other: TopicSet): boolean {
    return other.bits.some((w, i) => (w & (this.bits[i] ?? 0)) !== 0)
  }
  witness(other: TopicSet, mode: 'in-both' | 'only-in-other'): string | undefined {
    return topics.find((_, i) => {
      const mine = ((this.bits[i >>> 5] ?? 0) >>> (i & 31)) & 1
      const theirs = ((other.bits[i >>> 5] ?? 0) >>> (i & 31)) & 1
      return mode === 'in-both' ? mine === 1 && theirs === 1 : theirs === 1 && mine === 0
    })
  }
}

const cache = new Map<string, TopicSet>()
const matched = (filter: string): TopicSet => {
  let s = cache.get(filter)
  if (s === undefined) {
    s = new TopicSet(filter)
    cache.set(filter, s)
  }
  return s
}

interface Tally {
  covers: number
  notCovers: number
  overlaps: number
  disjoint: number
  failures: string[]
}

/** Compares both relations with brute force for one pair; records disagreements with a witness. */
function check(a: string, b: string, tally: Tally): void {
  const ma = matched(a)
  const mb = matched(b)
  const covers = ma.covers(mb)
  const overlap = ma.meets(mb)
  if (covers) tally.covers++
  else tally.notCovers++
  if (overlap) tally.overlaps++
  else tally.disjoint++
  if (filterCovers(a, b) !== covers && tally.failures.length < 20) {
    const w = covers ? '' : ` (${JSON.stringify(ma.witness(mb, 'only-in-other'))} is matched by the inner filter only)`
    tally.failures.push(`filterCovers(${JSON.stringify(a)}, ${JSON.stringify(b)}) should be ${covers}${w}`)
  }
  if (filtersOverlap(a, b) !== overlap && tally.failures.length < 20) {
    const w = overlap ? ` (both match ${JSON.stringify(ma.witness(mb, 'in-both'))})` : ''
    tally.failures.push(`filtersOverlap(${JSON.stringify(a)}, ${JSON.stringify(b)}) should be ${overlap}${w}`)
  }
}

const newTally = (): Tally => ({ covers: 0, notCovers: 0, overlaps: 0, disjoint: 0, failures: [] })

t.test('generators: valid topics and filters, the whole space', async (t) => {
  t.equal(topics.length, 4 + 16 + 64 + 256 - 1, 'every topic of 1-4 levels but the empty one')
  t.same(
    topics.filter((x) => validTopicName(x, 1024, 32) !== null),
    [],
    'all topic names valid [MQTT-4.7.3-1]',
  )
  const filters = allFilters()
  t.same(
    filters.filter((f) => validTopicFilter(f, 1024, 32) !== null),
    [],
    'all filters valid [MQTT-4.7.1-2]',
  )
  const rng = mulberry32(7)
  for (let i = 0; i < 500; i++) {
    const f = randomFilter(rng)
    if (validTopicFilter(f, 1024, 32) !== null || f.split('/').length > MAX_FILTER_LEVELS) t.fail(`bad random filter ${f}`)
  }
  t.ok(filters.includes('#') && filters.includes('+/#') && filters.includes('$x/+') && filters.includes('/#'))
})

for (const seed of [1, 42, 20240601]) {
  t.test(`random filter pairs (seed ${seed}) agree with brute force`, async (t) => {
    const rng = mulberry32(seed)
    const tally = newTally()
    for (let i = 0; i < 20_000; i++) check(randomFilter(rng), randomFilter(rng), tally)
    t.same(tally.failures, [], `seed ${seed}`)
    // Both outcomes of both relations occur, so this comparison can fail.
    t.ok(tally.covers > 100 && tally.notCovers > 100, `covers ${tally.covers} / not ${tally.notCovers}`)
    t.ok(tally.overlaps > 100 && tally.disjoint > 100, `overlap ${tally.overlaps} / disjoint ${tally.disjoint}`)
  })
}

t.test('every pair of filters of up to 3 levels agrees with brute force', async (t) => {
  const filters = allFilters()
  const tally = newTally()
  for (const a of filters) for (const b of filters) check(a, b, tally)
  t.same(tally.failures, [])
  t.equal(tally.covers + tally.notCovers, filters.length ** 2)
})

t.test('[MQTT-4.7.2-1] a leading wildcard reaches no $ topic', async (t) => {
  t.notOk(filterCovers('#', '$x/a'))
  t.notOk(filterCovers('+/a', '$x/a'))
  t.notOk(filtersOverlap('#', '$x/#'))
  t.notOk(filtersOverlap('+/+', '$x/a'))
  t.ok(filterCovers('$x/#', '$x/a/+'))
  t.ok(filtersOverlap('$x/+', '$x/#'))
  t.ok(filterCovers('a/#', 'a/$x'), '$ below the first level is an ordinary level')
})

t.test("[MQTT-4.7.1-2] '#' matches its parent level: 'a/#' covers 'a', 'a/+/#' does not cover 'a/#'", async (t) => {
  t.ok(filterCovers('a/#', 'a'))
  t.ok(filterCovers('a/#', 'a/#'))
  t.notOk(filterCovers('a/+/#', 'a/#'), "'a' is matched by 'a/#' only")
  t.ok(filtersOverlap('a/#', 'a'))
  t.notOk(filterCovers('a/+', 'a/#'))
})

t.test('[MQTT-4.7.3-1] the empty topic is no witness', async (t) => {
  // Found by this property test: both used to disagree with brute force.
  t.ok(filterCovers('+/#', '#'), "'#' has no parent level, so '+/#' matches everything '#' does")
  t.ok(filterCovers('/+/#', '/#'), "the only parent of '/#' is the empty topic")
  t.ok(filterCovers('+/+/#', '/#'))
  t.notOk(filterCovers('+/+/#', '#'), "'a' is matched by '#' only")
  t.notOk(filterCovers('+/+/#', '+/#'), "'a' is matched by '+/#' only")
  t.notOk(filtersOverlap('+', '/#'), "they share only the empty topic, which is no topic name")
  t.notOk(filtersOverlap('/#', '+'))
  t.ok(filtersOverlap('+', '+/#'), "'a'")
  t.ok(filtersOverlap('/+', '/#'), "'/'")
})

t.test('covers is reflexive and implies overlap; overlap is symmetric', async (t) => {
  const filters = allFilters()
  const bad: string[] = []
  for (const a of filters) {
    if (!filterCovers(a, a)) bad.push(`${a} does not cover itself`)
    for (const b of filters) {
      if (filtersOverlap(a, b) !== filtersOverlap(b, a)) bad.push(`overlap(${a}, ${b}) is not symmetric`)
      // A filter matching no topic name is covered by anything, so only non-empty inner ones.
      if (filterCovers(a, b) && matched(b).meets(matched(b)) && !filtersOverlap(a, b)) bad.push(`${a} covers ${b} without overlapping it`)
    }
  }
  t.same(bad.slice(0, 20), [])
})
