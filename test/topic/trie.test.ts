import t from 'tap'
import { matchesFilter } from '../../src/mqtt/topic/match.js'
import { SubscriptionTrie } from '../../src/mqtt/topic/trie.js'
import { validTopicFilter, validTopicName } from '../../src/mqtt/topic/validate.js'
import { mulberry32, pick, randomFilter, randomTopic } from './fixtures/random.js'
import { specMatchCases } from './fixtures/spec-cases.js'

function matched<T>(trie: SubscriptionTrie<T>, topic: string): string[] {
  const out: string[] = []
  trie.match(topic, (value, key, filter) => out.push(`${filter} ${key}=${String(value)}`))
  return out.sort()
}

t.test('spec examples agree with the reference matcher', async (t) => {
  for (const c of specMatchCases) {
    const trie = new SubscriptionTrie<number>()
    trie.add(c.filter, 'c', 1)
    t.same(matched(trie, c.topic), c.matches ? [`${c.filter} c=1`] : [], `[${c.id}] ${c.filter} vs ${c.topic}`)
  }
})

t.test('add replaces the value for the same filter and key [MQTT-3.8.4-3]', async (t) => {
  const trie = new SubscriptionTrie<string>()
  t.equal(trie.add('a/+', 'c1', 'x'), true)
  t.equal(trie.add('a/+', 'c2', 'y'), true)
  t.equal(trie.add('a/+', 'c1', 'z'), false)
  t.equal(trie.size, 2)
  t.equal(trie.filterCount, 1)
  t.equal(trie.get('a/+', 'c1'), 'z')
  t.equal(trie.get('a/+', 'c3'), undefined)
  t.equal(trie.get('a/#', 'c1'), undefined)
  t.same(matched(trie, 'a/b'), ['a/+ c1=z', 'a/+ c2=y'])
})

t.test('remove returns the value and forgets the entry', async (t) => {
  const trie = new SubscriptionTrie<number>()
  trie.add('a/b/c', 'k', 1)
  trie.add('a/b', 'k', 2)
  trie.add('a/#', 'k', 3)
  t.equal(trie.remove('a/b/c', 'other'), undefined)
  t.equal(trie.remove('a/b/c/d', 'k'), undefined)
  t.equal(trie.remove('a', 'k'), undefined, 'an inner node without entries')
  t.equal(trie.remove('a/b/c', 'k'), 1)
  t.equal(trie.remove('a/b/c', 'k'), undefined)
  t.same(matched(trie, 'a/b/c'), ['a/# k=3'])
  t.same(matched(trie, 'a/b'), ['a/# k=3', 'a/b k=2'])
  t.equal(trie.remove('a/#', 'k'), 3)
  t.equal(trie.remove('a/b', 'k'), 2)
  t.equal(trie.size, 0)
  t.equal(trie.filterCount, 0)
  t.same(matched(trie, 'a/b'), [])
  // Pruned paths must be rebuilt correctly.
  t.equal(trie.add('a/b/c', 'k', 4), true)
  t.same(matched(trie, 'a/b/c'), ['a/b/c k=4'])
})

t.test('stored undefined values are still entries', async (t) => {
  const trie = new SubscriptionTrie<undefined>()
  t.equal(trie.add('x', 'k', undefined), true)
  t.equal(trie.add('x', 'k', undefined), false)
  t.equal(trie.size, 1)
  t.same(matched(trie, 'x'), ['x k=undefined'])
  t.equal(trie.remove('x', 'k'), undefined)
  t.equal(trie.size, 0)
})

t.test('[MQTT-4.7.2-1] $ topics not matched by leading wildcards', async (t) => {
  const trie = new SubscriptionTrie<number>()
  for (const f of ['#', '+/#', '+', '+/monitor/Clients', '$SYS/#', '$SYS/+/Clients', '+/+/+']) trie.add(f, 'k', 0)
  t.same(matched(trie, '$SYS/monitor/Clients'), ['$SYS/# k=0', '$SYS/+/Clients k=0'])
  t.same(matched(trie, 'SYS/monitor/Clients'), ['# k=0', '+/# k=0', '+/+/+ k=0', '+/monitor/Clients k=0'])
})

t.test('visit receives the filter exactly as added', async (t) => {
  const trie = new SubscriptionTrie<number>()
  for (const f of ['/', '//#', '+/', '/+', 'a//b']) trie.add(f, 'k', 0)
  t.same(matched(trie, '/'), ['+/ k=0', '/ k=0', '/+ k=0', '//# k=0'])
  t.same(matched(trie, 'a//b'), ['a//b k=0'])
})

t.test("a '#' that is not the last level is a caller bug", async (t) => {
  const trie = new SubscriptionTrie<number>()
  t.throws(() => trie.add('a/#/b', 'k', 0), RangeError)
  t.equal(trie.size, 0)
})

t.test('visit may remove the entry it is given', async (t) => {
  const trie = new SubscriptionTrie<number>()
  const filters = ['#', 'a/#', 'a/+', 'a/b', 'a/b/#', '+/b']
  for (const f of filters) {
    trie.add(f, 'k1', 1)
    trie.add(f, 'k2', 2)
  }
  const seen: string[] = []
  trie.match('a/b', (_value, key, filter) => {
    seen.push(`${filter} ${key}`)
    trie.remove(filter, key)
  })
  t.equal(seen.length, filters.length * 2)
  t.equal(trie.size, 0)
  t.equal(trie.filterCount, 0)
})

// The trie must agree exactly with the reference matcher over every stored filter, including
// after removals have pruned and re-grown branches.
function propertyRun(seed: number, ops: number): { mismatches: string[]; checks: number; hits: number } {
  const rng = mulberry32(seed)
  const trie = new SubscriptionTrie<number>()
  const ref = new Map<string, Map<string, number>>()
  const keys = ['c1', 'c2', 'c3']
  const mismatches: string[] = []
  let checks = 0
  let hits = 0
  const fail = (what: string): void => {
    if (mismatches.length < 20) mismatches.push(`seed ${seed}: ${what}`)
  }

  const check = (topic: string): void => {
    const expected: string[] = []
    for (const [filter, byKey] of ref) {
      if (!matchesFilter(filter, topic)) continue
      for (const [key, value] of byKey) expected.push(`${filter} ${key}=${value}`)
    }
    expected.sort()
    const actual = matched(trie, topic)
    checks++
    if (expected.length > 0) hits++
    if (actual.join('\n') !== expected.join('\n')) {
      fail(`topic ${JSON.stringify(topic)}: got ${JSON.stringify(actual)} expected ${JSON.stringify(expected)}`)
    }
  }

  for (let op = 0; op < ops; op++) {
    if (rng() < 0.65 || ref.size === 0) {
      const filter = randomFilter(rng)
      if (validTopicFilter(filter, 65535, 32) !== null) fail(`generator made invalid filter ${filter}`)
      const key = pick(rng, keys)
      const byKey = ref.get(filter) ?? new Map<string, number>()
      const isNew = !byKey.has(key)
      byKey.set(key, op)
      ref.set(filter, byKey)
      if (trie.add(filter, key, op) !== isNew) fail(`add ${filter} ${key} returned ${String(!isNew)}`)
    } else {
      // Half the removals target a stored pair so that pruning is exercised often.
      let filter = randomFilter(rng)
      if (rng() < 0.5) filter = pick(rng, [...ref.keys()])
      const key = pick(rng, keys)
      const byKey = ref.get(filter)
      const expected = byKey?.get(key)
      if (byKey !== undefined) {
        byKey.delete(key)
        if (byKey.size === 0) ref.delete(filter)
      }
      const got = trie.remove(filter, key)
      if (got !== expected) fail(`remove ${filter} ${key} returned ${String(got)} expected ${String(expected)}`)
    }
    let size = 0
    for (const byKey of ref.values()) size += byKey.size
    if (trie.size !== size || trie.filterCount !== ref.size) {
      fail(`after op ${op}: size ${trie.size}/${size}, filterCount ${trie.filterCount}/${ref.size}`)
    }
    if (op % 10 === 0) {
      for (let i = 0; i < 10; i++) {
        const topic = randomTopic(rng)
        if (validTopicName(topic, 65535, 32) !== null) fail(`generator made invalid topic ${topic}`)
        check(topic)
      }
    }
  }

  // Drain everything; the trie must end up answering nothing.
  for (const [filter, byKey] of [...ref]) {
    for (const key of [...byKey.keys()]) {
      if (trie.remove(filter, key) !== byKey.get(key)) fail(`drain ${filter} ${key}`)
      byKey.delete(key)
    }
    ref.delete(filter)
  }
  if (trie.size !== 0 || trie.filterCount !== 0) fail(`not empty after drain: ${trie.size}`)
  for (let i = 0; i < 50; i++) check(randomTopic(rng))
  return { mismatches, checks, hits }
}

t.test('property: trie.match agrees with matchesFilter over all stored filters', async (t) => {
  for (const seed of [1, 42, 0xc0ffee]) {
    const { mismatches, checks, hits } = propertyRun(seed, 3000)
    t.same(mismatches, [], `seed ${seed}: ${checks} topics checked`)
    // Guards against a generator that never produces matches, which would prove nothing.
    t.ok(hits > checks / 2, `seed ${seed}: ${hits} of ${checks} topics had matches`)
  }
})
