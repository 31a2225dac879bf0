// A persistent session (expiry > 0) records every change of its state in the SessionStore as
// it happens, and `restore` brings that state back; a session that ends with its connection
// (expiry 0) never writes. A recording store logs each call of the port.
import t from 'tap'
import { createMessage, type Delivery, messageBytes, type QoS } from '../../src/mqtt/session/message.js'
import type { StoredDelivery, StoredSession } from '../../src/mqtt/session/store.js'
import { delivery, FakeSink, setup, subscription, T0 } from './fakes.js'

t.test('a persistent session records a delivery as it is queued, sent, acknowledged', async (t) => {
  const { session, store } = setup()
  t.equal(session.persistent, true)
  t.equal(session.deliver(delivery('a', 1)), 'queued')
  t.equal(session.deliver(delivery('b', 2)), 'queued')
  t.strictSame(store.take(), ['addDelivery c1 #1 queued 0 a', 'addDelivery c1 #2 queued 0 b'], 'QoS 1 and 2 offline: recorded as queued')

  const sink = new FakeSink()
  session.attach(sink)
  const [idA, idB] = sink.publishes.map((w) => w.packetId)
  if (idA === undefined || idB === undefined) throw new Error('two sends expected')
  t.strictSame(store.take(), [`updateDelivery c1 #1 await-ack ${idA}`, `updateDelivery c1 #2 await-ack ${idB}`], 'attach: in flight with their packet ids')

  t.ok(session.complete(idA, 'await-ack'))
  t.strictSame(store.take(), ['removeDelivery c1 #1'], 'PUBACK: removed')
  t.ok(session.received(idB))
  t.strictSame(store.take(), [`updateDelivery c1 #2 await-comp ${idB}`], 'PUBREC: await-comp')
  t.ok(session.received(idB))
  t.strictSame(store.take(), [], 'a repeated PUBREC changes nothing to record')
  t.ok(session.complete(idB, 'await-comp'))
  t.strictSame(store.take(), ['removeDelivery c1 #2'], 'PUBCOMP: removed')

  t.equal(session.deliver(delivery('c', 1)), 'sent')
  t.strictSame(store.take(), [`addDelivery c1 #3 await-ack ${sink.lastPacketId} c`], 'online with an open window: recorded in flight at once')
  t.equal(session.deliver(delivery('d', 2)), 'sent')
  const idD = sink.lastPacketId
  store.take()
  t.ok(session.abandon(idD))
  t.strictSame(store.take(), ['removeDelivery c1 #4'], 'PUBREC with an error: removed')
})

t.test('a recorded delivery carries its QoS, retain flag, subscription ids and the shared message', async (t) => {
  const { session, store } = setup()
  const message = createMessage({ topic: 'x', payload: Buffer.from('p'), qos: 2, retain: true, properties: undefined, expiresAt: T0 + 1000, origin: 'pub' })
  const d: Delivery = { message, qos: 1, retain: true, subscriptionIds: [1, 2] }
  session.deliver(d)
  const added = store.added[0]
  t.equal(added?.message, message, 'the Message object itself, not a copy')
  t.strictSame(added && { ...added, message: undefined }, { seq: 1, message: undefined, qos: 1, retain: true, subscriptionIds: [1, 2], state: 'queued', packetId: 0 })
})

t.test('QoS 0 is never recorded, online, offline or to a slow consumer', async (t) => {
  const { session, store } = setup()
  session.deliver(delivery('offline', 0))
  const sink = new FakeSink()
  session.attach(sink)
  session.deliver(delivery('online', 0))
  sink.writable = false
  session.deliver(delivery('slow', 0))
  t.strictSame(store.calls, [])
  t.strictSame(
    sink.publishes.map((w) => w.topic),
    ['online'],
  )
})

t.test('a message dropped because the queue is full is not recorded', async (t) => {
  const { session, store } = setup({ maxQueuedMessages: 1 })
  t.equal(session.deliver(delivery('kept', 1)), 'queued')
  t.equal(session.deliver(delivery('dropped', 1)), 'dropped-full')
  t.strictSame(store.calls, ['addDelivery c1 #1 queued 0 kept'])
})

t.test('subscribe, unsubscribe and incoming QoS 2 ids are recorded', async (t) => {
  const { session, store } = setup()
  t.equal(session.subscribe('a/#', subscription(1)), true, 'a new filter')
  t.equal(session.subscribe('a/#', subscription(2)), false, 'the same filter again replaces its options')
  t.equal(session.subscriptions.get('a/#')?.qos, 2)
  t.equal(session.unsubscribe('a/#'), true)
  t.equal(session.unsubscribe('a/#'), false, 'nothing left to unsubscribe')
  session.holdIncomingQos2(7)
  t.ok(session.hasIncomingQos2(7))
  t.equal(session.incomingQos2Count, 1)
  t.equal(session.releaseIncomingQos2(7), true)
  t.equal(session.releaseIncomingQos2(7), false, 'released once')
  t.notOk(session.hasIncomingQos2(7))
  t.strictSame(store.calls, [
    'saveSubscription c1 a/# qos 1',
    'saveSubscription c1 a/# qos 2',
    'deleteSubscription c1 a/#',
    'addIncomingQos2 c1 7',
    'removeIncomingQos2 c1 7',
  ])
})

t.test('[MQTT-3.3.2-5] an expired queued message is removed from the store when pumped', async (t) => {
  const { session, store, clock, drops } = setup()
  session.deliver(delivery('short', 1, T0 + 1000))
  session.deliver(delivery('long', 1, T0 + 60_000))
  store.take()
  clock.now = T0 + 1000
  const sink = new FakeSink()
  session.attach(sink)
  t.strictSame(drops.expired_, ['short'])
  t.strictSame(store.take(), ['removeDelivery c1 #1', `updateDelivery c1 #2 await-ack ${sink.lastPacketId}`])
})

t.test('a session with expiry 0 records nothing', async (t) => {
  const { session, store, clock } = setup({ maxQueuedMessages: 3 }, 0)
  t.equal(session.persistent, false)
  session.subscribe('a/#', subscription())
  session.holdIncomingQos2(1)
  session.deliver(delivery('q1', 1))
  session.deliver(delivery('q2', 2))
  session.deliver(delivery('expiring', 1, T0 + 10))
  session.deliver(delivery('full', 1))
  clock.now = T0 + 10
  const sink = new FakeSink()
  session.attach(sink)
  const [id1, id2] = sink.publishes.map((w) => w.packetId)
  session.complete(id1 ?? -1, 'await-ack')
  session.received(id2 ?? -1)
  session.complete(id2 ?? -1, 'await-comp')
  session.deliver(delivery('online', 1))
  session.deliver(delivery('zero', 0))
  session.abandon(sink.lastPacketId)
  session.releaseIncomingQos2(1)
  session.unsubscribe('a/#')
  t.strictSame(
    sink.publishes.map((w) => w.topic),
    ['q1', 'q2', 'online', 'zero'],
    'the session did its work',
  )
  t.strictSame(store.calls, [], 'and wrote nothing')
})

function storedDelivery(seq: number, topic: string, qos: QoS, state: StoredDelivery['state'], packetId: number): StoredDelivery {
  const message = createMessage({ topic, payload: Buffer.from(topic), qos, retain: false, properties: undefined, expiresAt: undefined, origin: 'pub' })
  return { seq, message, qos, retain: false, subscriptionIds: undefined, state, packetId }
}

function storedSession(): StoredSession {
  return {
    clientId: 'c1',
    owner: { username: 'u', account: undefined, admin: false },
    expiryInterval: 60,
    expiresAt: T0 + 60_000,
    will: undefined,
    subscriptions: new Map([['a/#', subscription(2)]]),
    deliveries: [
      storedDelivery(3, 'p1', 1, 'await-ack', 10),
      storedDelivery(4, 'p2', 2, 'await-comp', 11),
      storedDelivery(5, 'p3', 2, 'await-ack', 1),
      storedDelivery(6, 'q1', 1, 'queued', 0),
      storedDelivery(8, 'q2', 2, 'queued', 0),
    ],
    incomingQos2: new Set([5]),
  }
}

t.test('restore refills subscriptions, qos2 ids, the in-flight window and the queue, recording nothing', async (t) => {
  const { session, store } = setup()
  const stored = storedSession()
  session.restore(stored)
  t.strictSame(store.calls, [], 'what came from the store is not written back')
  t.notOk(session.connected)
  t.strictSame([...session.subscriptions.keys()], ['a/#'])
  t.equal(session.subscriptions.get('a/#')?.qos, 2)
  t.ok(session.hasIncomingQos2(5))
  t.equal(session.incomingQos2Count, 1)
  t.strictSame(
    [...session.inflight].map(([id, f]) => [id, f.seq, f.state, f.delivery.message.topic]),
    [
      [10, 3, 'await-ack', 'p1'],
      [11, 4, 'await-comp', 'p2'],
      [1, 5, 'await-ack', 'p3'],
    ],
    'in flight with their ids and states, in seq order',
  )
  t.strictSame(
    [...session.queuedDeliveries()].map((d) => d.message.topic),
    ['q1', 'q2'],
  )
  t.equal(session.queued, 2)
  const [, , , q1, q2] = stored.deliveries
  t.equal(session.queuedBytes, (q1 ? messageBytes(q1.message) : 0) + (q2 ? messageBytes(q2.message) : 0))
})

t.test('[MQTT-4.4.0-1] after restore, attach resends in-flight with DUP and PUBRELs; new deliveries follow the restored seqs', async (t) => {
  const { session, store } = setup()
  session.restore(storedSession())
  t.equal(session.deliver(delivery('offline', 1)), 'queued')
  t.strictSame(store.take(), ['addDelivery c1 #9 queued 0 offline'], 'seq above every restored one')
  const sink = new FakeSink()
  session.attach(sink)
  t.strictSame(sink.writes, [
    { kind: 'publish', topic: 'p1', packetId: 10, dup: true, qos: 1 },
    { kind: 'pubrel', packetId: 11 },
    { kind: 'publish', topic: 'p3', packetId: 1, dup: true, qos: 2 },
    { kind: 'publish', topic: 'q1', packetId: 2, dup: false, qos: 1 },
    { kind: 'publish', topic: 'q2', packetId: 3, dup: false, qos: 2 },
    { kind: 'publish', topic: 'offline', packetId: 4, dup: false, qos: 1 },
  ])
  t.strictSame(
    store.take(),
    ['updateDelivery c1 #6 await-ack 2', 'updateDelivery c1 #8 await-ack 3', 'updateDelivery c1 #9 await-ack 4'],
    'the resent ones are already recorded in flight; the queued ones move into flight',
  )
  t.equal(session.deliver(delivery('online', 1)), 'sent')
  t.strictSame(store.take(), ['addDelivery c1 #10 await-ack 5 online'])
  t.ok(session.complete(10, 'await-ack'), 'PUBACK for a restored id')
  t.ok(session.received(1), 'PUBREC for a restored id')
  t.ok(session.complete(11, 'await-comp'), 'PUBCOMP for a restored await-comp')
  t.strictSame(store.take(), ['removeDelivery c1 #3', 'updateDelivery c1 #5 await-comp 1', 'removeDelivery c1 #4'])
})
