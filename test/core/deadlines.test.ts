import t from 'tap'
import { FakeClock } from '../../src/core/clock.js'
import { DeadlineQueue } from '../../src/core/deadlines.js'
import { mulberry32 } from '../topic/fixtures/random.js'

const START = 1_700_000_000_000

function setup(): { clock: FakeClock; q: DeadlineQueue; fired: string[]; firedAt: number[] } {
  const clock = new FakeClock(START)
  const q = new DeadlineQueue(clock)
  return { clock, q, fired: [], firedAt: [] }
}

t.test('deadlines fire in order of their absolute time, not of scheduling', async (t) => {
  const { clock, q, fired, firedAt } = setup()
  q.at(START + 300, () => {
    fired.push('c')
    firedAt.push(clock.now())
  })
  q.at(START + 100, () => {
    fired.push('a')
    firedAt.push(clock.now())
  })
  q.at(START + 200, () => {
    fired.push('b')
    firedAt.push(clock.now())
  })
  t.equal(q.size, 3)
  clock.advance(99)
  t.same(fired, [], 'nothing is due before the first deadline')
  clock.advance(1)
  t.same(fired, ['a'], 'a deadline fires when the clock reaches it')
  clock.advance(1000)
  t.same(fired, ['a', 'b', 'c'])
  t.same(firedAt, [START + 100, START + 200, START + 300], 'each fired at its own deadline')
  t.equal(q.size, 0)
})

t.test('a deadline already past fires on the next timer turn', async (t) => {
  const { clock, q, fired } = setup()
  q.at(START - 5000, () => fired.push('late'))
  t.same(fired, [], 'not synchronously inside at()')
  clock.advance(0)
  t.same(fired, ['late'])
})

t.test('cancel removes a deadline; cancelling twice or after firing is harmless', async (t) => {
  const { clock, q, fired } = setup()
  const a = q.at(START + 10, () => fired.push('a'))
  const b = q.at(START + 20, () => fired.push('b'))
  q.at(START + 30, () => fired.push('c'))
  t.equal(b.at, START + 20, 'the handle carries its deadline')
  b.cancel()
  b.cancel()
  t.equal(q.size, 2)
  clock.advance(15)
  t.same(fired, ['a'])
  a.cancel()
  t.equal(q.size, 1, 'cancelling a fired deadline removes nothing else')
  clock.advance(100)
  t.same(fired, ['a', 'c'])
})

t.test('cancelling the earliest deadline re-arms for the next one', async (t) => {
  const { clock, q, fired } = setup()
  const first = q.at(START + 10, () => fired.push('first'))
  q.at(START + 50, () => fired.push('second'))
  first.cancel()
  clock.advance(49)
  t.same(fired, [])
  clock.advance(1)
  t.same(fired, ['second'])
})

t.test('deadlines with the same time fire first-in first-out', async (t) => {
  const { clock, q, fired } = setup()
  const names = Array.from({ length: 50 }, (_, i) => `n${i}`)
  for (const n of names) q.at(START + 100, () => fired.push(n))
  q.at(START + 50, () => fired.push('early'))
  clock.advance(100)
  t.same(fired, ['early', ...names])
})

t.test('a deadline earlier than the armed one re-arms the timer', async (t) => {
  const { clock, q, fired, firedAt } = setup()
  q.at(START + 1000, () => fired.push('late'))
  clock.advance(100)
  q.at(START + 200, () => {
    fired.push('early')
    firedAt.push(clock.now())
  })
  clock.advance(100)
  t.same(fired, ['early'], 'the earlier deadline does not wait for the later timer')
  t.same(firedAt, [START + 200])
  clock.advance(799)
  t.same(fired, ['early'])
  clock.advance(1)
  t.same(fired, ['early', 'late'])
})

t.test('a deadline added from inside a firing callback is honoured', async (t) => {
  const { clock, q, fired } = setup()
  q.at(START + 10, () => {
    fired.push('a')
    q.at(START + 10, () => fired.push('same-time'))
    q.at(START + 40, () => fired.push('later'))
  })
  q.at(START + 20, () => fired.push('b'))
  clock.advance(20)
  t.same(fired, ['a', 'same-time', 'b'])
  clock.advance(20)
  t.same(fired, ['a', 'same-time', 'b', 'later'])
})

t.test('a callback may cancel a deadline that is due at the same time', async (t) => {
  const { clock, q, fired } = setup()
  let victim: { cancel(): void } | undefined
  q.at(START + 10, () => {
    fired.push('a')
    victim?.cancel()
  })
  victim = q.at(START + 10, () => fired.push('victim'))
  q.at(START + 10, () => fired.push('c'))
  clock.advance(10)
  t.same(fired, ['a', 'c'])
  t.equal(q.size, 0)
})

t.test('dispose drops every deadline and its timer', async (t) => {
  const { clock, q, fired } = setup()
  q.at(START + 10, () => fired.push('a'))
  q.at(START + 20, () => fired.push('b'))
  q.dispose()
  t.equal(q.size, 0)
  clock.advance(100)
  t.same(fired, [])
})

t.test('many random deadlines with random cancels fire in order, each exactly once, at its time', async (t) => {
  for (const seed of [3, 17, 99]) {
    const rng = mulberry32(seed)
    const { clock, q } = setup()
    const fired: { id: number; at: number; now: number }[] = []
    const expected: { id: number; at: number }[] = []
    const handles: { id: number; cancel(): void }[] = []
    const cancelled = new Set<number>()
    for (let id = 0; id < 2000; id++) {
      // A narrow range makes equal deadlines common, which exercises the FIFO rule.
      const at = START + Math.floor(rng() * 500)
      const h = q.at(at, () => fired.push({ id, at, now: clock.now() }))
      handles.push({ id, cancel: () => h.cancel() })
      expected.push({ id, at })
    }
    for (const h of handles) {
      if (rng() < 0.2) {
        h.cancel()
        cancelled.add(h.id)
      }
    }
    t.equal(q.size, 2000 - cancelled.size, `seed ${seed}: size after cancels`)
    // Move time in random uneven steps.
    while (clock.now() < START + 600) clock.advance(1 + Math.floor(rng() * 37))
    const want = expected.filter((e) => !cancelled.has(e.id)).sort((a, b) => a.at - b.at || a.id - b.id)
    t.same(
      fired.map((f) => f.id),
      want.map((e) => e.id),
      `seed ${seed}: order by time, then scheduling order`,
    )
    t.ok(
      fired.every((f) => f.now === f.at),
      `seed ${seed}: each fired exactly at its deadline`,
    )
    t.equal(q.size, 0)
  }
})

t.test('interleaved adds and advances keep order', async (t) => {
  const rng = mulberry32(5)
  const { clock, q } = setup()
  const fired: number[] = []
  let lastAt = -1
  let outOfOrder = 0
  let early = 0
  for (let round = 0; round < 300; round++) {
    for (let i = 0; i < 5; i++) {
      const at = clock.now() + Math.floor(rng() * 200)
      q.at(at, () => {
        if (at < lastAt) outOfOrder++
        if (clock.now() < at) early++
        lastAt = at
        fired.push(at)
      })
    }
    clock.advance(Math.floor(rng() * 20))
  }
  clock.advance(1000)
  t.equal(fired.length, 1500)
  t.equal(outOfOrder, 0)
  t.equal(early, 0)
})
