import t from 'tap'
import { matchesFilter } from '../../src/mqtt/topic/match.js'
import { RetainedTree } from '../../src/mqtt/topic/retained.js'
import { mulberry32, pick, randomFilter, randomTopic } from './fixtures/random.js'
import { specMatchCases } from './fixtures/spec-cases.js'

function matched<T>(tree: RetainedTree<T>, filter: string): string[] {
  const out: string[] = []
  tree.match(filter, (topic, value) => out.push(`${topic}=${String(value)}`))
  return out.sort()
}

t.test('spec examples agree with the reference matcher', async (t) => {
  for (const c of specMatchCases) {
    const tree = new RetainedTree<number>()
    tree.set(c.topic, 1)
    t.same(matched(tree, c.filter), c.matches ? [`${c.topic}=1`] : [], `[${c.id}] ${c.filter} vs ${c.topic}`)
  }
})

t.test('set, get, has, delete and size', async (t) => {
  const tree = new RetainedTree<string>()
  t.equal(tree.set('a/b', 'x'), true)
  t.equal(tree.set('a/b', 'y'), false)
  t.equal(tree.set('a', 'z'), true)
  t.equal(tree.size, 2)
  t.equal(tree.get('a/b'), 'y')
  t.equal(tree.get('a/b/c'), undefined)
  t.equal(tree.has('a'), true)
  t.equal(tree.has('a/'), false)
  t.equal(tree.delete('a/b/c'), false)
  t.equal(tree.delete('a/b'), true)
  t.equal(tree.delete('a/b'), false)
  t.equal(tree.get('a'), 'z', 'deleting a child keeps its parent')
  t.equal(tree.delete('a'), true)
  t.equal(tree.size, 0)
  t.same([...tree.entries()], [])
  t.same(matched(tree, '#'), [])
  t.equal(tree.set('a/b', 'again'), true, 'pruned paths are rebuilt')
  t.same(matched(tree, 'a/+'), ['a/b=again'])
})

t.test('stored undefined values are still stored', async (t) => {
  const tree = new RetainedTree<undefined>()
  tree.set('x', undefined)
  t.equal(tree.has('x'), true)
  t.equal(tree.size, 1)
  t.same(matched(tree, 'x'), ['x=undefined'])
  t.same(matched(tree, '#'), ['x=undefined'])
})

t.test('[MQTT-4.7.2-1] $ topics not matched by leading wildcards', async (t) => {
  const tree = new RetainedTree<number>()
  for (const topic of ['$SYS/monitor/Clients', '$SYS', 'SYS/monitor/Clients', 'a/$b']) tree.set(topic, 0)
  t.same(matched(tree, '#'), ['SYS/monitor/Clients=0', 'a/$b=0'])
  t.same(matched(tree, '+/monitor/Clients'), ['SYS/monitor/Clients=0'])
  t.same(matched(tree, '$SYS/#'), ['$SYS/monitor/Clients=0', '$SYS=0'])
  t.same(matched(tree, '+/+'), ['a/$b=0'])
})

t.test("[MQTT-4.7.1-2] '#' includes the parent level", async (t) => {
  const tree = new RetainedTree<number>()
  for (const topic of ['sport', 'sport/', 'sport/tennis', 'sports']) tree.set(topic, 0)
  t.same(matched(tree, 'sport/#'), ['sport/=0', 'sport/tennis=0', 'sport=0'])
})

t.test('visit may delete the topic it is given', async (t) => {
  const tree = new RetainedTree<number>()
  const topics = ['a', 'a/b', 'a/b/c', 'a//', 'b']
  for (const topic of topics) tree.set(topic, 0)
  const seen: string[] = []
  tree.match('#', (topic) => {
    seen.push(topic)
    tree.delete(topic)
  })
  t.same(seen.sort(), [...topics].sort())
  t.equal(tree.size, 0)
})

function propertyRun(seed: number, ops: number): { mismatches: string[]; checks: number; hits: number } {
  const rng = mulberry32(seed)
  const tree = new RetainedTree<number>()
  const ref = new Map<string, number>()
  const mismatches: string[] = []
  let checks = 0
  let hits = 0
  const fail = (what: string): void => {
    if (mismatches.length < 20) mismatches.push(`seed ${seed}: ${what}`)
  }

  const check = (filter: string): void => {
    const expected: string[] = []
    for (const [topic, value] of ref) if (matchesFilter(filter, topic)) expected.push(`${topic}=${value}`)
    expected.sort()
    const actual = matched(tree, filter)
    checks++
    if (expected.length > 0) hits++
    if (actual.join('\n') !== expected.join('\n')) {
      fail(`filter ${JSON.stringify(filter)}: got ${JSON.stringify(actual)} expected ${JSON.stringify(expected)}`)
    }
  }

  for (let op = 0; op < ops; op++) {
    if (rng() < 0.6 || ref.size === 0) {
      const topic = randomTopic(rng)
      const isNew = !ref.has(topic)
      ref.set(topic, op)
      if (tree.set(topic, op) !== isNew) fail(`set ${topic} returned ${String(!isNew)}`)
    } else {
      const topic = rng() < 0.5 ? pick(rng, [...ref.keys()]) : randomTopic(rng)
      const expected = ref.delete(topic)
      if (tree.delete(topic) !== expected) fail(`delete ${topic} returned ${String(!expected)}`)
    }
    if (tree.size !== ref.size) fail(`after op ${op}: size ${tree.size}/${ref.size}`)
    if (op % 10 === 0) {
      for (let i = 0; i < 10; i++) check(randomFilter(rng))
      const entries = [...tree.entries()].map(([topic, value]) => `${topic}=${value}`).sort()
      const want = [...ref].map(([topic, value]) => `${topic}=${value}`).sort()
      if (entries.join('\n') !== want.join('\n')) fail(`entries after op ${op}`)
    }
  }

  for (const topic of [...ref.keys()]) {
    if (!tree.delete(topic)) fail(`drain ${topic}`)
    ref.delete(topic)
  }
  if (tree.size !== 0) fail(`not empty after drain: ${tree.size}`)
  for (let i = 0; i < 50; i++) check(randomFilter(rng))
  return { mismatches, checks, hits }
}

t.test('property: RetainedTree.match agrees with matchesFilter over all stored topics', async (t) => {
  for (const seed of [7, 1234, 0xbadc0de]) {
    const { mismatches, checks, hits } = propertyRun(seed, 3000)
    t.same(mismatches, [], `seed ${seed}: ${checks} filters checked`)
    t.ok(hits > checks / 2, `seed ${seed}: ${hits} of ${checks} filters had matches`)
  }
})
