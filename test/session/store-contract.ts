// The contract every SessionStore (src/mqtt/session/store.ts) must pass: the memory store and
// the durable one run this same suite (ARCHITECTURE.md, habit 9). Every behaviour is checked
// through `load()` of the store that was written, and, when the factory can reopen the same
// backing state, through `load()` of a reopened store too: what a restart would bring back.
import type { Test } from 'tap'
import type { ForwardedProperties } from '../../src/mqtt/protocol/packets.js'
import { createMessage, type Message, type MessageFields } from '../../src/mqtt/session/message.js'
import { NEVER_EXPIRES, type SubscriptionOptions } from '../../src/mqtt/session/session.js'
import type { SessionOwner, SessionStore, StoredDelivery, StoredSession, StoredState, StoredWill } from '../../src/mqtt/session/store.js'

export interface StoreFactory {
  /** A new, empty store. */
  open(): SessionStore | Promise<SessionStore>
  /**
   * Closes `previous` and opens the same backing state again, as a restart would. Durable
   * stores provide it; the memory store has nothing to reopen.
   */
  reopen?(previous: SessionStore): SessionStore | Promise<SessionStore>
}

const T0 = 1_700_000_000_000

// ---------------------------------------------------------------------------------------------
// Fixtures

const alice: SessionOwner = { username: 'alice', account: 'acme', admin: false }
const anonymous: SessionOwner = { username: undefined, account: undefined, admin: true }

/** Every forwarded v5 property, with a binary correlation id and a repeated user property. */
const richProperties: ForwardedProperties = {
  payloadFormatIndicator: true,
  contentType: 'application/json; charset=utf-8',
  responseTopic: 'reply/ü/1',
  correlationData: Buffer.from([0x00, 0xde, 0xad, 0xbe, 0xef, 0xff]),
  userProperties: [['site', 'north'], ['tags', 'a'], ['empty', ''], ['tags', 'b'], ['tags', 'ü']],
}

function message(topic: string, fields: Partial<MessageFields> = {}): Message {
  return createMessage({
    topic,
    payload: Buffer.from([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]),
    qos: 1,
    retain: false,
    properties: undefined,
    expiresAt: undefined,
    origin: 'publisher-1',
    ...fields,
  })
}

function options(fields: Partial<SubscriptionOptions> = {}): SubscriptionOptions {
  return { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined, ...fields }
}

function delivery(seq: number, m: Message, fields: Partial<StoredDelivery> = {}): StoredDelivery {
  return { seq, message: m, qos: m.qos, retain: false, subscriptionIds: undefined, state: 'queued', packetId: 0, ...fields }
}

// ---------------------------------------------------------------------------------------------
// Views: plain data that compares exactly (strictSame), so a durable store that hands back
// `1` for `true`, a string for a number or a Uint8Array for a Buffer fails.

function propertiesView(p: ForwardedProperties | undefined): Record<string, unknown> | undefined {
  if (p === undefined) return undefined
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(p)) {
    if (value === undefined) continue
    out[key] = Buffer.isBuffer(value) ? `buffer ${value.toString('hex')}` : value
  }
  return out
}

function messageView(m: Message) {
  return {
    topic: m.topic,
    payload: Buffer.isBuffer(m.payload) ? `buffer ${m.payload.toString('hex')}` : 'not a Buffer',
    qos: m.qos,
    retain: m.retain,
    properties: propertiesView(m.properties),
    expiresAt: m.expiresAt,
    origin: m.origin,
  }
}

function willView(w: StoredWill | undefined) {
  if (w === undefined) return undefined
  return { message: messageView(w.message), delaySeconds: w.delaySeconds, expirySeconds: w.expirySeconds, publishAt: w.publishAt }
}

function optionsView(o: SubscriptionOptions) {
  return { qos: o.qos, noLocal: o.noLocal, retainAsPublished: o.retainAsPublished, retainHandling: o.retainHandling, subscriptionId: o.subscriptionId }
}

function deliveryView(d: StoredDelivery) {
  return {
    seq: d.seq,
    message: messageView(d.message),
    qos: d.qos,
    retain: d.retain,
    subscriptionIds: d.subscriptionIds === undefined ? undefined : [...d.subscriptionIds],
    state: d.state,
    packetId: d.packetId,
  }
}

const byKey = <V>(entries: Iterable<[string, V]>): [string, V][] => [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

function sessionView(s: StoredSession) {
  return {
    clientId: s.clientId,
    owner: { username: s.owner.username, account: s.owner.account, admin: s.owner.admin },
    expiryInterval: s.expiryInterval,
    expiresAt: s.expiresAt,
    will: willView(s.will),
    subscriptions: byKey(s.subscriptions).map(([filter, o]) => [filter, optionsView(o)]),
    deliveries: s.deliveries.map(deliveryView),
    incomingQos2: [...s.incomingQos2].sort((a, b) => a - b),
  }
}

function stateView(state: StoredState) {
  return {
    sessions: byKey(state.sessions.map((s): [string, ReturnType<typeof sessionView>] => [s.clientId, sessionView(s)])).map(([, v]) => v),
    retained: byKey(state.retained.map((m): [string, ReturnType<typeof messageView>] => [m.topic, messageView(m)])).map(([, v]) => v),
  }
}

interface Expected {
  owner?: SessionOwner
  expiryInterval?: number
  expiresAt?: number | undefined
  will?: StoredWill | undefined
  subscriptions?: [string, SubscriptionOptions][]
  /** In the order load must return them: by seq. */
  deliveries?: StoredDelivery[]
  incomingQos2?: number[]
}

/** The view of the session `clientId` as it was written. */
function expected(clientId: string, e: Expected): ReturnType<typeof sessionView> {
  return sessionView({
    clientId,
    owner: e.owner ?? alice,
    expiryInterval: e.expiryInterval ?? 60,
    expiresAt: e.expiresAt,
    will: e.will,
    subscriptions: new Map(e.subscriptions ?? []),
    deliveries: e.deliveries ?? [],
    incomingQos2: new Set(e.incomingQos2 ?? []),
  })
}

function sessionOf(state: StoredState, clientId: string): StoredSession | undefined {
  return state.sessions.find((s) => s.clientId === clientId)
}

const idsOf = (state: StoredState): string[] => state.sessions.map((s) => s.clientId).sort()

// ---------------------------------------------------------------------------------------------
// The harness: one fresh store per subtest, closed when the subtest ends.

interface Loaded {
  readonly via: string
  readonly state: StoredState
}

class Harness {
  readonly #t: Test
  readonly #factory: StoreFactory
  #store: SessionStore
  #closed = false

  constructor(t: Test, factory: StoreFactory, store: SessionStore) {
    this.#t = t
    this.#factory = factory
    this.#store = store
  }

  /** The store to write to: after `loaded` on a reopenable store, the reopened one. */
  get store(): SessionStore {
    return this.#store
  }

  /**
   * `load()` of the store itself and, when the factory can reopen, of a reopened store
   * (flushed and closed first, as the app stops); `check` asserts on each, and the two must
   * agree.
   */
  async loaded(check: (state: StoredState, via: string) => void = () => {}): Promise<Loaded[]> {
    const out: Loaded[] = [{ via: 'load', state: this.#store.load() }]
    const reopen = this.#factory.reopen
    if (reopen !== undefined) {
      this.#store.flush()
      this.#store = await reopen.call(this.#factory, this.#store)
      const state = this.#store.load()
      this.#t.strictSame(stateView(state), stateView(out[0]?.state ?? state), 'a reopened store loads what the store itself loaded')
      out.push({ via: 'after reopen', state })
    }
    for (const { via, state } of out) check(state, via)
    return out
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#store.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The contract

/** Runs the SessionStore contract as subtests of `t`, each on a fresh store from `factory`. */
export function sessionStoreContract(t: Test, name: string, factory: StoreFactory): void {
  const test = (title: string, fn: (t: Test, h: Harness) => Promise<void>): void => {
    t.test(`${name}: ${title}`, async (t) => {
      const h = new Harness(t, factory, await factory.open())
      t.teardown(() => h.close())
      await fn(t, h)
    })
  }

  test('a new store loads empty', async (t, h) => {
    await h.loaded((state, via) => {
      t.strictSame(state.sessions, [], `no sessions (${via})`)
      t.strictSame(state.retained, [], `no retained messages (${via})`)
    })
  })

  test('durable is a boolean', async (t, h) => {
    t.type(h.store.durable, 'boolean')
  })

  test('saveSession then load returns the session with its owner, expiry interval and deadline', async (t, h) => {
    h.store.saveSession('a', alice, 60, T0 + 60_000)
    h.store.saveSession('client/ü +#', anonymous, NEVER_EXPIRES, undefined)
    await h.loaded((state, via) => {
      t.strictSame(idsOf(state), ['a', 'client/ü +#'], via)
      const a = sessionOf(state, 'a')
      const b = sessionOf(state, 'client/ü +#')
      t.strictSame(a && sessionView(a), expected('a', { owner: alice, expiryInterval: 60, expiresAt: T0 + 60_000 }), `a disconnected session (${via})`)
      t.strictSame(
        b && sessionView(b),
        expected('client/ü +#', { owner: anonymous, expiryInterval: NEVER_EXPIRES, expiresAt: undefined }),
        `a connected session that never expires, with no username (${via})`,
      )
      t.strictSame(state.retained, [], via)
    })
  })

  test('saveSession again updates the session and keeps what it owns', async (t, h) => {
    const s = h.store
    s.saveSession('a', alice, 60, undefined)
    s.saveSession('b', alice, 10, T0 + 10_000)
    const will: StoredWill = { message: message('will/a'), delaySeconds: 5, expirySeconds: undefined, publishAt: undefined }
    const d = delivery(1, message('t/1'))
    s.saveWill('a', will)
    s.saveSubscription('a', 't/#', options())
    s.addDelivery('a', d)
    s.addIncomingQos2('a', 9)
    await h.loaded()
    h.store.saveSession('a', anonymous, 3600, T0 + 3_600_000)
    h.store.saveSession('b', alice, 20, undefined)
    await h.loaded((state, via) => {
      t.strictSame(idsOf(state), ['a', 'b'], `still two sessions (${via})`)
      const a = sessionOf(state, 'a')
      t.strictSame(
        a && sessionView(a),
        expected('a', { owner: anonymous, expiryInterval: 3600, expiresAt: T0 + 3_600_000, will, subscriptions: [['t/#', options()]], deliveries: [d], incomingQos2: [9] }),
        `owner, interval and deadline updated; will, subscriptions, deliveries and qos2 ids kept (${via})`,
      )
      const b = sessionOf(state, 'b')
      t.strictSame(b && sessionView(b), expected('b', { owner: alice, expiryInterval: 20, expiresAt: undefined }), `a deadline cleared (${via})`)
    })
  })

  test('deleteSession removes the session with its subscriptions, deliveries, will and qos2 ids', async (t, h) => {
    const fill = (id: string): Expected => {
      const will: StoredWill = { message: message(`will/${id}`), delaySeconds: 0, expirySeconds: 30, publishAt: undefined }
      const ds = [delivery(1, message(`t/${id}/1`)), delivery(2, message(`t/${id}/2`, { qos: 2 }), { state: 'await-ack', packetId: 4 })]
      h.store.saveSession(id, alice, 60, T0 + 60_000)
      h.store.saveWill(id, will)
      h.store.saveSubscription(id, `t/${id}/#`, options())
      h.store.saveSubscription(id, '$share/g/all/+', options({ qos: 2 }))
      for (const d of ds) h.store.addDelivery(id, d)
      h.store.addIncomingQos2(id, 3)
      return {
        owner: alice,
        expiryInterval: 60,
        expiresAt: T0 + 60_000,
        will,
        subscriptions: [
          [`t/${id}/#`, options()],
          ['$share/g/all/+', options({ qos: 2 })],
        ],
        deliveries: ds,
        incomingQos2: [3],
      }
    }
    fill('gone')
    const kept = fill('kept')
    h.store.deleteSession('gone')
    await h.loaded((state, via) => {
      t.strictSame(idsOf(state), ['kept'], via)
      const k = sessionOf(state, 'kept')
      t.strictSame(k && sessionView(k), expected('kept', kept), `the other session is untouched (${via})`)
    })
    h.store.saveSession('gone', alice, 60, undefined)
    await h.loaded((state, via) => {
      const again = sessionOf(state, 'gone')
      t.strictSame(again && sessionView(again), expected('gone', { expiresAt: undefined }), `saved again, it starts with nothing left over (${via})`)
    })
    h.store.deleteSession('gone')
    h.store.deleteSession('gone')
    await h.loaded((state, via) => t.strictSame(idsOf(state), ['kept'], `a second delete is ignored (${via})`))
  })

  test('saveWill sets, replaces and clears the will, its message round-tripping exactly', async (t, h) => {
    h.store.saveSession('a', alice, 60, undefined)
    const connected: StoredWill = {
      message: message('will/a', { qos: 2, retain: false, properties: richProperties, expiresAt: undefined, origin: 'a' }),
      delaySeconds: 30,
      expirySeconds: undefined,
      publishAt: undefined,
    }
    h.store.saveWill('a', connected)
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.strictSame(a && willView(a.will), willView(connected), `a will with every v5 property, not yet due (${via})`)
      const payload = a?.will?.message.payload
      t.ok(payload !== undefined && Buffer.isBuffer(payload) && payload.equals(connected.message.payload), `payload bytes equal (${via})`)
      const correlation = a?.will?.message.properties?.correlationData
      t.ok(correlation !== undefined && Buffer.isBuffer(correlation) && correlation.equals(Buffer.from([0x00, 0xde, 0xad, 0xbe, 0xef, 0xff])), `correlation data bytes equal (${via})`)
    })
    const pending: StoredWill = {
      message: message('will/a/pending', { qos: 0, retain: true, payload: Buffer.from('gone'), expiresAt: T0 + 90_000, origin: 'a' }),
      delaySeconds: 30,
      expirySeconds: 60,
      publishAt: T0 + 30_000,
    }
    h.store.saveWill('a', pending)
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.strictSame(a && willView(a.will), willView(pending), `replaced by a pending will with a deadline, no properties, retained, with an expiry (${via})`)
    })
    h.store.saveWill('a', undefined)
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.ok(a !== undefined, `the session stays (${via})`)
      t.equal(a?.will, undefined, `the will is cleared (${via})`)
    })
  })

  test('saveSubscription and deleteSubscription keep every subscription option', async (t, h) => {
    h.store.saveSession('a', alice, 60, undefined)
    const subs: [string, SubscriptionOptions][] = [
      ['a/+/c', options({ qos: 0 })],
      ['#', options({ qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 268_435_455 })],
      ['$share/group/x/#', options({ qos: 1, retainHandling: 1, subscriptionId: 1 })],
      ['ü/é/😀', options({ noLocal: true, subscriptionId: undefined })],
      ['gone/soon', options()],
    ]
    for (const [filter, o] of subs) h.store.saveSubscription('a', filter, o)
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.strictSame(a && sessionView(a).subscriptions, expected('a', { subscriptions: subs }).subscriptions, `all options kept (${via})`)
    })
    const replaced = options({ qos: 2, noLocal: false, retainAsPublished: true, retainHandling: 0, subscriptionId: 7 })
    h.store.saveSubscription('a', 'a/+/c', replaced)
    h.store.deleteSubscription('a', 'gone/soon')
    h.store.deleteSubscription('a', 'never/subscribed')
    const now: [string, SubscriptionOptions][] = [['a/+/c', replaced], ...subs.slice(1, 4)]
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.strictSame(
        a && sessionView(a).subscriptions,
        expected('a', { subscriptions: now }).subscriptions,
        `saving a filter again replaces its options; deleting removes one; an unknown filter is ignored (${via})`,
      )
    })
  })

  test('addDelivery, updateDelivery and removeDelivery; deliveries load ordered by seq', async (t, h) => {
    h.store.saveSession('a', alice, 60, undefined)
    const m1 = message('t/1', { qos: 2, properties: richProperties })
    const m2 = message('t/2', { qos: 1, expiresAt: T0 + 5000 })
    const m3 = message('t/3', { qos: 2, retain: true, payload: Buffer.alloc(0) })
    const m4 = message('t/4', { qos: 1 })
    const d7 = delivery(7, m1, { qos: 1, retain: false, subscriptionIds: [1, 2], state: 'await-ack', packetId: 65_535 })
    const d3 = delivery(3, m2, { subscriptionIds: undefined })
    const d12 = delivery(12, m3, { retain: true, subscriptionIds: [268_435_455], state: 'await-comp', packetId: 1 })
    const d5 = delivery(5, m4)
    for (const d of [d7, d3, d12, d5]) h.store.addDelivery('a', d)
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.strictSame(a?.deliveries.map((d) => d.seq), [3, 5, 7, 12], `ordered by seq though added out of order (${via})`)
      t.strictSame(a && sessionView(a).deliveries, expected('a', { deliveries: [d3, d5, d7, d12] }).deliveries, `every field kept (${via})`)
      const empty = a?.deliveries.find((d) => d.seq === 12)?.message.payload
      t.ok(empty !== undefined && Buffer.isBuffer(empty) && empty.length === 0, `an empty payload comes back as an empty Buffer (${via})`)
    })
    h.store.updateDelivery('a', 3, 'await-ack', 9)
    h.store.updateDelivery('a', 7, 'await-comp', 65_535)
    h.store.updateDelivery('a', 5, 'await-ack', 10)
    h.store.updateDelivery('a', 5, 'queued', 0)
    h.store.removeDelivery('a', 12)
    h.store.removeDelivery('a', 12)
    await h.loaded((state, via) => {
      const a = sessionOf(state, 'a')
      t.strictSame(
        a && sessionView(a).deliveries,
        expected('a', {
          deliveries: [{ ...d3, state: 'await-ack', packetId: 9 }, d5, { ...d7, state: 'await-comp' }],
        }).deliveries,
        `updates change state and packet id only; a delivery can go back to the queue; removed is gone (${via})`,
      )
    })
    const d20 = delivery(20, message('t/20'))
    h.store.addDelivery('a', d20)
    h.store.removeDelivery('a', 3)
    await h.loaded((state, via) => {
      t.strictSame(sessionOf(state, 'a')?.deliveries.map((d) => d.seq), [5, 7, 20], `later additions keep the order (${via})`)
    })
  })

  test('one message referenced by two sessions and the retained store comes back equal everywhere', async (t, h) => {
    const shared = message('shared/topic', { qos: 2, retain: true, properties: richProperties, expiresAt: T0 + 60_000 })
    h.store.saveSession('a', alice, 60, undefined)
    h.store.saveSession('b', anonymous, 60, undefined)
    h.store.addDelivery('a', delivery(1, shared, { qos: 2, retain: true }))
    h.store.addDelivery('b', delivery(4, shared, { qos: 1, subscriptionIds: [3] }))
    h.store.setRetained(shared)
    await h.loaded((state, via) => {
      const view = messageView(shared)
      t.strictSame(sessionOf(state, 'a')?.deliveries.map((d) => messageView(d.message)), [view], `in a's deliveries (${via})`)
      t.strictSame(sessionOf(state, 'b')?.deliveries.map((d) => messageView(d.message)), [view], `in b's deliveries (${via})`)
      t.strictSame(state.retained.map(messageView), [view], `retained (${via})`)
      t.strictSame(
        sessionOf(state, 'b')?.deliveries.map((d) => [d.qos, d.retain, d.subscriptionIds]),
        [[1, false, [3]]],
        `each delivery keeps its own QoS, retain flag and ids (${via})`,
      )
    })
    h.store.deleteSession('a')
    h.store.deleteRetained('shared/topic')
    await h.loaded((state, via) => {
      t.strictSame(
        sessionOf(state, 'b')?.deliveries.map((d) => messageView(d.message)),
        [messageView(shared)],
        `dropping the other references keeps the message for b (${via})`,
      )
      t.strictSame(state.retained, [], via)
    })
  })

  test('addIncomingQos2 and removeIncomingQos2', async (t, h) => {
    h.store.saveSession('a', alice, 60, undefined)
    h.store.saveSession('b', alice, 60, undefined)
    for (const id of [1, 7, 65_535]) h.store.addIncomingQos2('a', id)
    h.store.addIncomingQos2('b', 7)
    await h.loaded((state, via) => {
      t.strictSame([...(sessionOf(state, 'a')?.incomingQos2 ?? [])].sort((x, y) => x - y), [1, 7, 65_535], via)
      t.strictSame([...(sessionOf(state, 'b')?.incomingQos2 ?? [])], [7], `ids are per session (${via})`)
    })
    h.store.removeIncomingQos2('a', 7)
    h.store.removeIncomingQos2('a', 99)
    await h.loaded((state, via) => {
      t.strictSame([...(sessionOf(state, 'a')?.incomingQos2 ?? [])].sort((x, y) => x - y), [1, 65_535], `removed; an unknown id is ignored (${via})`)
      t.strictSame([...(sessionOf(state, 'b')?.incomingQos2 ?? [])], [7], `b keeps its own id 7 (${via})`)
    })
    h.store.addIncomingQos2('a', 7)
    await h.loaded((state, via) => {
      t.strictSame([...(sessionOf(state, 'a')?.incomingQos2 ?? [])].sort((x, y) => x - y), [1, 7, 65_535], `an id can be held again after release (${via})`)
    })
  })

  test('setRetained keeps one message per topic; deleteRetained removes it', async (t, h) => {
    const first = message('r/1', { retain: true, qos: 0 })
    const second = message('r/1', { retain: true, qos: 1, payload: Buffer.from('second'), properties: richProperties, expiresAt: T0 + 1000, origin: 'other' })
    const other = message('r/2', { retain: true, qos: 2 })
    const deep = message('r/ü/😀/x', { retain: true })
    h.store.setRetained(first)
    h.store.setRetained(other)
    h.store.setRetained(deep)
    h.store.setRetained(second)
    await h.loaded((state, via) => {
      t.strictSame(stateView(state).retained, [second, other, deep].map(messageView).sort((a, b) => (a.topic < b.topic ? -1 : 1)), `r/1 replaced (${via})`)
      t.strictSame(state.sessions, [], `retained messages are not sessions (${via})`)
    })
    h.store.deleteRetained('r/2')
    h.store.deleteRetained('r/never')
    await h.loaded((state, via) => {
      t.strictSame(stateView(state).retained.map((m) => m.topic), ['r/1', 'r/ü/😀/x'], `deleted; an unknown topic is ignored (${via})`)
    })
  })

  test('writes for an unknown session are ignored without throwing', async (t, h) => {
    const s = h.store
    const m = message('ghost/1')
    t.doesNotThrow(() => {
      s.saveWill('ghost', { message: m, delaySeconds: 0, expirySeconds: undefined, publishAt: undefined })
      s.saveWill('ghost', undefined)
      s.saveSubscription('ghost', 'ghost/#', options())
      s.deleteSubscription('ghost', 'ghost/#')
      s.saveSubscription('ghost', 'kept/#', options())
      s.addDelivery('ghost', delivery(1, m))
      s.addDelivery('ghost', delivery(2, m))
      s.updateDelivery('ghost', 1, 'await-ack', 5)
      s.removeDelivery('ghost', 2)
      s.addIncomingQos2('ghost', 3)
      s.addIncomingQos2('ghost', 4)
      s.removeIncomingQos2('ghost', 4)
      s.deleteSession('ghost')
    })
    await h.loaded((state, via) => t.strictSame(stateView(state), { sessions: [], retained: [] }, `nothing was created (${via})`))
    h.store.saveSession('ghost', alice, 60, undefined)
    h.store.saveSession('known', alice, 60, undefined)
    t.doesNotThrow(() => {
      h.store.updateDelivery('known', 41, 'await-ack', 5)
      h.store.removeDelivery('known', 42)
      h.store.deleteSubscription('known', 'not/subscribed')
      h.store.removeIncomingQos2('known', 43)
      h.store.saveWill('known', undefined)
    }, 'unknown seq, filter and id of a known session')
    await h.loaded((state, via) => {
      const ghost = sessionOf(state, 'ghost')
      t.strictSame(ghost && sessionView(ghost), expected('ghost', {}), `writes made before the session existed left nothing behind (${via})`)
      const known = sessionOf(state, 'known')
      t.strictSame(known && sessionView(known), expected('known', {}), `nothing changed for the known session (${via})`)
    })
  })

  test('afterCommit calls its callbacks with no error, in the order registered', async (t, h) => {
    const s = h.store
    const calls: { name: string; error: Error | undefined }[] = []
    const after = (name: string): Promise<void> =>
      new Promise((resolve) =>
        s.afterCommit((error) => {
          calls.push({ name, error })
          resolve()
        }),
      )
    const waits = [after('nothing pending')]
    s.saveSession('a', alice, 60, undefined)
    waits.push(after('after saveSession'))
    s.addDelivery('a', delivery(1, message('t/1')))
    s.setRetained(message('r/1', { retain: true }))
    waits.push(after('after addDelivery and setRetained'))
    waits.push(after('registered right after'))
    s.flush()
    await Promise.all(waits)
    t.strictSame(
      calls.map((c) => c.name),
      ['nothing pending', 'after saveSession', 'after addDelivery and setRetained', 'registered right after'],
    )
    t.strictSame(
      calls.map((c) => c.error),
      [undefined, undefined, undefined, undefined],
      'no error',
    )
    await h.loaded((state, via) => t.strictSame(idsOf(state), ['a'], `what was committed loads (${via})`))
  })

  test('flush and close do not throw', async (t, h) => {
    const s = h.store
    t.doesNotThrow(() => s.flush(), 'flush with nothing pending')
    s.saveSession('a', alice, 60, undefined)
    s.setRetained(message('r/1', { retain: true }))
    t.doesNotThrow(() => s.flush(), 'flush with writes pending')
    t.doesNotThrow(() => s.flush(), 'flush twice')
    await h.loaded((state, via) => t.strictSame(idsOf(state), ['a'], via))
    t.doesNotThrow(() => h.close(), 'close')
  })
}
