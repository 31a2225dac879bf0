// The contract every SessionStore (src/mqtt/session/ports.ts) must pass: the in-memory store
// and the durable one run this same suite (ARCHITECTURE.md, habit 9). A store is the registry
// of the broker's Session objects: what `get` returns is the object that was `put`, because
// the broker keeps mutating it after storing it.
import type { Test } from 'tap'
import type { SessionStore } from '../../src/mqtt/session/ports.js'
import { type DropCounter, NEVER_EXPIRES, Session, type SessionLimits } from '../../src/mqtt/session/session.js'

export type MakeStore = () => SessionStore | Promise<SessionStore>

const limits: SessionLimits = { maxInflight: 10, maxQueuedMessages: 100, maxQueuedBytes: 1_000_000 }
const drops: DropCounter = { dropped: () => {}, expired: () => {} }

/** A session the way the broker builds one. */
export function makeSession(clientId: string, expiryInterval = 60): Session {
  return new Session(clientId, expiryInterval, limits, drops, () => 1_700_000_000_000)
}

const ids = (store: SessionStore): string[] => [...store.values()].map((s) => s.clientId).sort()

/** Runs the SessionStore contract as subtests of `t`, each on a fresh store from `makeStore`. */
export function sessionStoreContract(t: Test, name: string, makeStore: MakeStore): void {
  t.test(`${name}: a new store is empty`, async (t) => {
    const store = await makeStore()
    t.equal(store.size, 0)
    t.equal(store.get('nobody'), undefined)
    t.same(ids(store), [])
    t.equal(store.delete('nobody'), false, 'deleting an unknown id reports false')
    t.equal(store.size, 0)
  })

  t.test(`${name}: put then get returns the session that was put`, async (t) => {
    const store = await makeStore()
    const a = makeSession('a')
    store.put(a)
    t.equal(store.size, 1)
    t.equal(store.get('a'), a, 'the same object')
    t.equal(store.get('A'), undefined, 'client ids are case-sensitive')
    t.equal(store.get('b'), undefined)
  })

  t.test(`${name}: the stored object is live: changes after put are seen through get`, async (t) => {
    const store = await makeStore()
    const a = makeSession('a', 10)
    store.put(a)
    a.expiryInterval = NEVER_EXPIRES
    a.subscriptions.set('x/#', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined })
    t.equal(store.get('a')?.expiryInterval, NEVER_EXPIRES)
    t.equal(store.get('a')?.subscriptions.get('x/#')?.qos, 1)
  })

  t.test(`${name}: put with a known client id replaces the old session`, async (t) => {
    const store = await makeStore()
    const first = makeSession('dup')
    const second = makeSession('dup')
    store.put(first)
    store.put(makeSession('other'))
    store.put(second)
    t.equal(store.size, 2, 'size counts client ids, not puts')
    t.equal(store.get('dup'), second)
    const listed = [...store.values()].filter((s) => s.clientId === 'dup')
    t.equal(listed.length, 1, 'values lists a client id once')
    t.equal(listed[0], second)
  })

  t.test(`${name}: putting the same session twice keeps one entry`, async (t) => {
    const store = await makeStore()
    const a = makeSession('a')
    store.put(a)
    store.put(a)
    t.equal(store.size, 1)
    t.same(ids(store), ['a'])
  })

  t.test(`${name}: delete removes one session and reports whether it existed`, async (t) => {
    const store = await makeStore()
    store.put(makeSession('a'))
    store.put(makeSession('b'))
    store.put(makeSession('c'))
    t.equal(store.delete('b'), true)
    t.equal(store.delete('b'), false, 'a second delete finds nothing')
    t.equal(store.get('b'), undefined)
    t.equal(store.size, 2)
    t.same(ids(store), ['a', 'c'])
    t.ok(store.get('a') !== undefined && store.get('c') !== undefined, 'the others stay')
  })

  t.test(`${name}: a deleted id can be stored again`, async (t) => {
    const store = await makeStore()
    store.put(makeSession('a'))
    store.delete('a')
    const again = makeSession('a')
    store.put(again)
    t.equal(store.get('a'), again)
    t.equal(store.size, 1)
  })

  t.test(`${name}: values lists every stored session exactly once and size agrees`, async (t) => {
    const store = await makeStore()
    const all = Array.from({ length: 200 }, (_, i) => makeSession(`client-${i}`))
    for (const s of all) store.put(s)
    for (let i = 0; i < 200; i += 3) store.delete(`client-${i}`)
    const kept = all.filter((_, i) => i % 3 !== 0)
    t.equal(store.size, kept.length)
    const listed = [...store.values()]
    t.equal(listed.length, kept.length)
    t.equal(new Set(listed).size, listed.length, 'no session twice')
    t.ok(
      kept.every((s) => listed.includes(s)),
      'every kept session is listed',
    )
  })

  t.test(`${name}: values can be copied and the store changed while walking the copy`, async (t) => {
    const store = await makeStore()
    for (const id of ['a', 'b', 'c', 'd']) store.put(makeSession(id))
    for (const s of [...store.values()]) if (s.clientId !== 'c') store.delete(s.clientId)
    t.same(ids(store), ['c'])
    t.equal(store.size, 1)
  })

  t.test(`${name}: unusual client ids are plain keys`, async (t) => {
    const store = await makeStore()
    const odd = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'a/b', '+', '#', 'ü-ß-😀', ' ', 'x'.repeat(23), 'x'.repeat(1000)]
    t.equal(store.get('__proto__'), undefined, 'nothing inherited answers get')
    t.equal(store.get('constructor'), undefined)
    for (const id of odd) store.put(makeSession(id))
    t.equal(store.size, odd.length)
    for (const id of odd) t.equal(store.get(id)?.clientId, id, JSON.stringify(id.slice(0, 20)))
    t.same(ids(store), [...odd].sort())
    t.equal(store.delete('__proto__'), true)
    t.equal(store.get('__proto__'), undefined)
    t.equal(store.size, odd.length - 1)
  })
}
