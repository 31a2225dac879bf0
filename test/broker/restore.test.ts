// Broker.restore: what a SessionStore kept comes back as sessions, subscriptions, queues,
// wills and expiry deadlines on the same absolute clock; what ended while perch was down
// ends now. The store is a MemorySessionStore filled through its write methods, and the
// broker is built as src/app/app.ts builds it, with a fake clock.
import t from 'tap'
import { OpenHooks } from '../../src/auth/open.js'
import { FakeClock } from '../../src/core/clock.js'
import { DeadlineQueue } from '../../src/core/deadlines.js'
import { silentLogger } from '../../src/core/logger.js'
import { Broker } from '../../src/mqtt/broker/broker.js'
import type { ClientInfo, SubscribeDecision } from '../../src/mqtt/broker/hooks.js'
import { MemorySessionStore } from '../../src/mqtt/session/memory-store.js'
import { createMessage, type Message, type MessageFields } from '../../src/mqtt/session/message.js'
import { NEVER_EXPIRES, type SubscriptionOptions } from '../../src/mqtt/session/session.js'
import type { SessionOwner, StoredSession, StoredWill } from '../../src/mqtt/session/store.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const T0 = 1_700_000_000_000
const owner: SessionOwner = { username: 'u', account: undefined, admin: false }

function message(topic: string, fields: Partial<MessageFields> = {}): Message {
  return createMessage({ topic, payload: Buffer.from(topic), qos: 1, retain: false, properties: undefined, expiresAt: undefined, origin: 'pub', ...fields })
}

function options(qos: 0 | 1 | 2 = 1): SubscriptionOptions {
  return { qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined }
}

function will(topic: string, fields: Partial<StoredWill> = {}, messageFields: Partial<MessageFields> = {}): StoredWill {
  return { message: message(topic, messageFields), delaySeconds: 0, expirySeconds: undefined, publishAt: undefined, ...fields }
}

/** A disconnected session subscribed to `wills/#` that expires in an hour: it queues what it receives. */
function watcher(store: MemorySessionStore, clientId = 'watcher'): void {
  store.saveSession(clientId, owner, 3600, T0 + 3_600_000)
  store.saveSubscription(clientId, 'wills/#', options(1))
}

function setup(t: Teardown, fill: (store: MemorySessionStore) => void, hooks = new OpenHooks()) {
  const clock = new FakeClock(T0)
  const deadlines = new DeadlineQueue(clock)
  const store = new MemorySessionStore()
  fill(store)
  const broker = new Broker({
    hooks,
    store,
    clock,
    deadlines,
    logger: silentLogger(),
    limits: {
      maxInflight: 10,
      maxQueuedMessages: 100,
      maxQueuedBytes: 1_000_000,
      maxSessionExpiry: NEVER_EXPIRES,
      maxQueuedMessagesTotal: 10_000,
      maxQueuedBytesTotal: 100_000_000,
    },
  })
  const restored = broker.restore(store.load())
  t.teardown(() => {
    broker.dispose()
    deadlines.dispose()
  })
  const queuedTopics = (clientId: string): string[] => [...(broker.sessions.get(clientId)?.queuedDeliveries() ?? [])].map((d) => d.message.topic)
  const stored = (clientId: string): StoredSession | undefined => store.load().sessions.find((s) => s.clientId === clientId)
  return { clock, deadlines, store, broker, restored, queuedTopics, stored }
}

t.test('a restored session keeps its subscriptions and queue and receives what is published', async (t) => {
  const { broker, restored, queuedTopics, stored } = setup(t, (store) => {
    store.saveSession('s', owner, 3600, T0 + 3_600_000)
    store.saveSubscription('s', 'x/#', options(1))
    store.saveSubscription('s', '$share/g/y/+', options(2))
    store.addDelivery('s', { seq: 4, message: message('x/old'), qos: 1, retain: false, subscriptionIds: undefined, state: 'queued', packetId: 0 })
    store.addIncomingQos2('s', 9)
  })
  t.strictSame(restored, { sessions: 1, expired: 0, retained: 0 })
  const session = broker.sessions.get('s')
  t.ok(session !== undefined)
  t.notOk(session?.connected, 'restored sessions wait for their client')
  t.strictSame([...(session?.subscriptions.keys() ?? [])], ['x/#', '$share/g/y/+'])
  t.ok(session?.hasIncomingQos2(9))
  t.equal(broker.router.subscriptionCount, 2, 'both filters are routed again')
  t.equal(broker.publish(message('x/new', { qos: 1 })), 1)
  t.equal(broker.publish(message('y/1', { qos: 2 })), 1, 'the shared subscription is routed too')
  t.strictSame(queuedTopics('s'), ['x/old', 'x/new', 'y/1'])
  t.strictSame(
    stored('s')?.deliveries.map((d) => [d.seq, d.message.topic, d.state]),
    [
      [4, 'x/old', 'queued'],
      [5, 'x/new', 'queued'],
      [6, 'y/1', 'queued'],
    ],
    'the new deliveries are recorded with seqs after the restored one',
  )
})

t.test('after a restore, subscriptions that today\'s rules deny deliver nothing, and queued messages no longer readable are withdrawn', async (t) => {
  class DenyingHooks extends OpenHooks {
    override authorizeSubscribe(_client: ClientInfo, filter: string): SubscribeDecision {
      return filter.startsWith('secret/') ? 'deny' : 'allow'
    }
    override canRead(_client: ClientInfo, topic: string): boolean {
      return !topic.startsWith('secret/')
    }
  }
  const { broker, stored, queuedTopics } = setup(
    t,
    (store) => {
      store.saveSession('s', owner, 3600, T0 + 3_600_000)
      store.saveSubscription('s', 'open/#', options())
      store.saveSubscription('s', 'secret/#', options())
      store.addDelivery('s', { seq: 1, message: message('secret/old'), qos: 1, retain: false, subscriptionIds: undefined, state: 'queued', packetId: 0 })
      store.addDelivery('s', { seq: 2, message: message('open/old'), qos: 1, retain: false, subscriptionIds: undefined, state: 'queued', packetId: 0 })
    },
    new DenyingHooks(),
  )
  // Kept, as after a live revoke, so that a grant given back resumes it.
  t.strictSame([...(broker.sessions.get('s')?.subscriptions.keys() ?? [])], ['open/#', 'secret/#'])
  t.equal(broker.publish(message('secret/1')), 0, 'the denied filter delivers nothing')
  t.equal(broker.publish(message('open/1')), 1)
  t.strictSame(queuedTopics('s'), ['open/old', 'open/1'], 'the unreadable queued message was withdrawn')
  t.strictSame(
    stored('s')?.deliveries.map((d) => d.message.topic),
    ['open/old', 'open/1'],
    'from the store too',
  )
})

t.test('a session whose deadline passed while perch was down is dropped and its will published', async (t) => {
  const { broker, restored, queuedTopics, stored } = setup(t, (store) => {
    watcher(store)
    store.saveSession('gone', owner, 60, T0 - 1)
    store.saveSubscription('gone', 'x/#', options())
    store.saveWill('gone', will('wills/gone', { delaySeconds: 120, publishAt: T0 + 60_000 }))
    store.saveSession('gone-retained', owner, 60, T0)
    store.saveWill('gone-retained', will('wills/retained', {}, { retain: true }))
  })
  t.strictSame(restored, { sessions: 1, expired: 2, retained: 0 })
  t.notOk(broker.sessions.has('gone'))
  t.notOk(broker.sessions.has('gone-retained'), 'a deadline equal to now has passed')
  t.equal(stored('gone'), undefined, 'deleted from the store')
  t.equal(stored('gone-retained'), undefined)
  t.strictSame(queuedTopics('watcher'), ['wills/gone', 'wills/retained'], 'the wills reached a subscriber')
  t.equal(broker.router.retained.get('wills/retained')?.topic, 'wills/retained', 'a retained will is retained')
  t.equal(broker.stats.sessionsExpired, 2)
  t.equal(broker.stats.willsPublished, 2)
  t.equal(broker.publish(message('x/1')), 0, 'its subscriptions are not routed')
})

t.test('a will published at restore reaches sessions restored after the one that sent it', async (t) => {
  const { queuedTopics } = setup(t, (store) => {
    store.saveSession('gone', owner, 60, T0 - 1)
    store.saveWill('gone', will('wills/gone'))
    store.saveSession('was-connected', owner, 60, undefined)
    store.saveWill('was-connected', will('wills/connected'))
    watcher(store)
  })
  // The store's load order is not specified, so no session may depend on being restored first.
  t.strictSame(queuedTopics('watcher'), ['wills/gone', 'wills/connected'], 'the watcher has both wills')
})

t.test('a session stored as connected gets its expiry from now, and its will (delay 0) goes out at restore', async (t) => {
  const { broker, clock, restored, queuedTopics, stored } = setup(t, (store) => {
    watcher(store)
    store.saveSession('c', owner, 60, undefined)
    store.saveSubscription('c', 'c/#', options())
    store.saveWill('c', will('wills/c'))
  })
  t.strictSame(restored, { sessions: 2, expired: 0, retained: 0 })
  t.ok(broker.sessions.has('c'))
  t.strictSame(queuedTopics('watcher'), ['wills/c'], 'its connection ended with perch: the will is published')
  t.equal(broker.stats.willsPublished, 1)
  t.equal(stored('c')?.expiresAt, T0 + 60_000, 'the deadline now + interval is recorded')
  t.equal(stored('c')?.will, undefined, 'the published will is cleared')
  clock.advance(59_999)
  t.ok(broker.sessions.has('c'), 'still there before the deadline')
  clock.advance(1)
  t.notOk(broker.sessions.has('c'), 'gone at now + interval')
  t.equal(stored('c'), undefined)
  t.equal(broker.stats.sessionsExpired, 1)
  t.equal(broker.stats.willsPublished, 1, 'the will went out once')
  t.strictSame(queuedTopics('watcher'), ['wills/c'])
})

t.test('a session stored as connected with a will delay schedules the will and records its deadline', async (t) => {
  const { broker, clock, queuedTopics, stored } = setup(t, (store) => {
    watcher(store)
    store.saveSession('c', owner, 60, undefined)
    store.saveWill('c', will('wills/c', { delaySeconds: 10 }))
  })
  t.strictSame(queuedTopics('watcher'), [])
  t.equal(stored('c')?.will?.publishAt, T0 + 10_000)
  clock.advance(10_000)
  t.strictSame(queuedTopics('watcher'), ['wills/c'])
  t.equal(stored('c')?.will, undefined)
  t.ok(broker.sessions.has('c'))
})

t.test('a session stored as connected that never expires stays without a deadline', async (t) => {
  const { broker, clock, stored } = setup(t, (store) => {
    store.saveSession('forever', owner, NEVER_EXPIRES, undefined)
  })
  t.ok(broker.sessions.has('forever'))
  t.equal(stored('forever')?.expiresAt, undefined)
  clock.advance(400 * 24 * 3_600_000)
  t.ok(broker.sessions.has('forever'))
})

t.test('[MQTT-3.1.3-9] a pending will is published when the clock reaches its deadline', async (t) => {
  const { broker, clock, restored, queuedTopics, stored } = setup(t, (store) => {
    watcher(store)
    store.saveSession('p', owner, 3600, T0 + 3_600_000)
    store.saveWill('p', will('wills/p', { delaySeconds: 30, publishAt: T0 + 5000 }, { retain: true }))
  })
  t.strictSame(restored, { sessions: 2, expired: 0, retained: 0 })
  t.strictSame(queuedTopics('watcher'), [], 'not due yet')
  t.equal(stored('p')?.will?.publishAt, T0 + 5000, 'the stored deadline is kept, not recomputed')
  clock.advance(4999)
  t.strictSame(queuedTopics('watcher'), [])
  clock.advance(1)
  t.strictSame(queuedTopics('watcher'), ['wills/p'])
  t.ok(broker.router.retained.has('wills/p'))
  t.equal(stored('p')?.will, undefined, 'cleared from the store once published')
  t.ok(broker.sessions.has('p'), 'the session lives on')
  t.equal(stored('p')?.expiresAt, T0 + 3_600_000)
})

t.test('[MQTT-3.3.2-5] expired retained messages are not restored and leave the store', async (t) => {
  const { broker, restored, store } = setup(t, (store) => {
    store.setRetained(message('r/expired', { retain: true, expiresAt: T0 - 1 }))
    store.setRetained(message('r/edge', { retain: true, expiresAt: T0 }))
    store.setRetained(message('r/later', { retain: true, expiresAt: T0 + 1000 }))
    store.setRetained(message('r/forever', { retain: true }))
  })
  t.strictSame(restored, { sessions: 0, expired: 0, retained: 2 })
  t.notOk(broker.router.retained.has('r/expired'))
  t.notOk(broker.router.retained.has('r/edge'), 'an expiry equal to now has passed')
  t.ok(broker.router.retained.has('r/later'))
  t.ok(broker.router.retained.has('r/forever'))
  t.strictSame(
    store
      .load()
      .retained.map((m) => m.topic)
      .sort(),
    ['r/forever', 'r/later'],
  )
})

t.test('restore counts restored sessions, expired sessions and retained messages', async (t) => {
  const { restored, broker } = setup(t, (store) => {
    store.saveSession('live', owner, 60, T0 + 1)
    store.saveSession('connected', owner, 60, undefined)
    store.saveSession('forever', owner, NEVER_EXPIRES, undefined)
    store.saveSession('expired-1', owner, 60, T0 - 60_000)
    store.saveSession('expired-2', owner, 60, T0)
    store.setRetained(message('r/1', { retain: true }))
    store.setRetained(message('r/2', { retain: true, expiresAt: T0 + 1 }))
    store.setRetained(message('r/3', { retain: true, expiresAt: T0 - 1 }))
  })
  t.strictSame(restored, { sessions: 3, expired: 2, retained: 2 })
  t.strictSame([...broker.sessions.keys()].sort(), ['connected', 'forever', 'live'])
})
