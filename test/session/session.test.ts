// Session without sockets: the in-flight window, packet ids, the offline queue, and what
// reattaching resends. A fake PacketSink records every write.
import t from 'tap'
import { messageBytes } from '../../src/mqtt/session/message.js'
import { delivery, FakeSink, setup, subscription, T0 } from './fakes.js'

t.test('QoS 0 to an offline session is dropped, not queued', async (t) => {
  const { session, drops } = setup()
  t.equal(session.deliver(delivery('a', 0)), 'dropped-offline')
  t.equal(session.queued, 0)
  const sink = new FakeSink()
  session.attach(sink)
  t.same(sink.writes, [], 'nothing arrives on attach')
  t.same(drops.dropped_, [], 'an offline QoS 0 loss is not counted as a queue drop')
})

t.test('QoS 0 to a connected session is written at once without a packet id', async (t) => {
  const { session } = setup()
  const sink = new FakeSink()
  session.attach(sink)
  t.equal(session.deliver(delivery('a', 0)), 'sent')
  t.same(sink.writes, [{ kind: 'publish', topic: 'a', packetId: 0, dup: false, qos: 0 }])
  t.equal(session.inflight.size, 0)
})

t.test('QoS 0 to a slow consumer is dropped and counted', async (t) => {
  const { session, drops } = setup()
  const sink = new FakeSink()
  sink.writable = false
  session.attach(sink)
  t.equal(session.deliver(delivery('a', 0)), 'dropped-slow')
  t.same(drops.dropped_, [{ reason: 'dropped-slow', topic: 'a' }])
  t.same(sink.writes, [])
})

t.test('[MQTT-3.1.2-5] QoS 1 and 2 to an offline session are queued and delivered on attach, in order', async (t) => {
  const { session } = setup()
  t.equal(session.deliver(delivery('q1', 1)), 'queued')
  t.equal(session.deliver(delivery('q2', 2)), 'queued')
  t.equal(session.deliver(delivery('q3', 1)), 'queued')
  t.equal(session.queued, 3)
  t.equal(session.queuedBytes, 3 * messageBytes(delivery('q1', 1).message))
  t.same(
    [...session.queuedDeliveries()].map((d) => d.message.topic),
    ['q1', 'q2', 'q3'],
  )
  const sink = new FakeSink()
  session.attach(sink)
  t.same(
    sink.publishes.map((w) => [w.topic, w.qos, w.dup]),
    [
      ['q1', 1, false],
      ['q2', 2, false],
      ['q3', 1, false],
    ],
  )
  t.ok(
    sink.publishes.every((w) => w.packetId > 0),
    'each has a non-zero packet id',
  )
  t.equal(session.queued, 0)
  t.equal(session.queuedBytes, 0)
  t.equal(session.inflight.size, 3)
})

t.test('[MQTT-3.3.4-7] the in-flight window is min(client Receive Maximum, maxInflight)', async (t) => {
  for (const [receiveMaximum, maxInflight] of [
    [3, 10],
    [10, 2],
    [4, 4],
  ] as const) {
    const window = Math.min(receiveMaximum, maxInflight)
    const { session } = setup({ maxInflight })
    const sink = new FakeSink(receiveMaximum)
    session.attach(sink)
    const outcomes = Array.from({ length: 12 }, (_, i) => session.deliver(delivery(`m${i}`, 1)))
    t.equal(outcomes.filter((o) => o === 'sent').length, window, `receiveMaximum ${receiveMaximum}, maxInflight ${maxInflight}`)
    t.equal(session.inflight.size, window)
    t.equal(session.queued, 12 - window)
    // Each acknowledgement opens one slot and the next queued message takes it.
    const first = sink.publishes[0]
    t.ok(first !== undefined && session.complete(first.packetId, 'await-ack'))
    t.equal(sink.publishes.length, window + 1)
    t.equal(session.inflight.size, window, 'the window never grows beyond its size')
    // Drain: acknowledge whatever is in flight until everything went out.
    let guard = 0
    while (session.inflight.size > 0 && guard++ < 100) {
      const [id] = session.inflight.keys()
      if (id !== undefined) session.complete(id, 'await-ack')
      t.ok(session.inflight.size <= window)
    }
    t.same(
      sink.publishes.map((w) => w.topic),
      Array.from({ length: 12 }, (_, i) => `m${i}`),
      'all sent, in order',
    )
  }
})

t.test('[MQTT-4.6.0-1] a message arriving while others wait in the queue goes behind them', async (t) => {
  const { session } = setup({ maxInflight: 1 })
  const sink = new FakeSink()
  session.attach(sink)
  session.deliver(delivery('a', 1))
  t.equal(session.deliver(delivery('b', 1)), 'queued')
  const a = sink.publishes[0]
  if (a === undefined) throw new Error('a not sent')
  // The slot frees while the socket is full, so b stays queued with the window open.
  sink.writable = false
  t.ok(session.complete(a.packetId, 'await-ack'))
  t.equal(session.inflight.size, 0)
  sink.writable = true
  t.equal(session.deliver(delivery('c', 1)), 'queued', 'not sent ahead of b')
  session.pump()
  session.complete(sink.publishes[1]?.packetId ?? -1, 'await-ack')
  t.same(
    sink.publishes.map((w) => w.topic),
    ['a', 'b', 'c'],
  )
})

t.test('a slow socket holds QoS 1 messages in the queue until it can write', async (t) => {
  const { session } = setup()
  const sink = new FakeSink()
  sink.writable = false
  session.attach(sink)
  t.equal(session.deliver(delivery('a', 1)), 'queued')
  t.equal(session.deliver(delivery('b', 1)), 'queued')
  t.same(sink.writes, [])
  sink.writable = true
  session.pump()
  t.same(
    sink.publishes.map((w) => w.topic),
    ['a', 'b'],
  )
})

t.test('[MQTT-2.3.1-2] packet ids are non-zero, skip ids still in flight and wrap after 65535', async (t) => {
  const { session } = setup({ maxInflight: 65_535 })
  const sink = new FakeSink()
  session.attach(sink)
  session.deliver(delivery('held', 1)) // takes id 1 and keeps it
  const held = sink.publishes[0]
  t.equal(held?.packetId, 1)
  const seen = new Set<number>()
  let bad = 0
  for (let i = 0; i < 65_534; i++) {
    session.deliver(delivery('cycle', 1))
    const id = sink.lastPacketId
    if (id < 1 || id > 65_535 || id === 1) bad++
    seen.add(id)
    session.complete(id, 'await-ack')
  }
  t.equal(bad, 0, 'never 0, never above 65535, never the id still in flight')
  t.equal(seen.size, 65_534, 'ids 2..65535 each once')
  t.ok(seen.has(65_535), 'uses 65535')
  session.deliver(delivery('after-wrap', 1))
  t.equal(sink.lastPacketId, 2, 'wraps to 1, which is in use, so takes 2')
  t.ok(session.complete(1, 'await-ack'), 'the held id is still its own')
  session.deliver(delivery('next', 1))
  t.equal(sink.lastPacketId, 3)
})

t.test('[MQTT-2.3.1-2] packet ids skip several in-flight ids in a row', async (t) => {
  const { session } = setup({ maxInflight: 10 })
  const sink = new FakeSink()
  session.attach(sink)
  for (const topic of ['a', 'b', 'c', 'd']) session.deliver(delivery(topic, 1)) // ids 1..4
  session.complete(1, 'await-ack')
  session.complete(3, 'await-ack')
  // Next ids continue upward from 5 (ids are not immediately reused).
  session.deliver(delivery('e', 1))
  t.equal(sink.publishes[4]?.packetId, 5)
  t.same([...session.inflight.keys()].sort((x, y) => x - y), [2, 4, 5])
})

t.test('[MQTT-4.4.0-1] reattaching resends unacknowledged PUBLISH with DUP and PUBREL for await-comp, in order', async (t) => {
  const { session } = setup()
  const first = new FakeSink()
  session.attach(first)
  session.deliver(delivery('p1', 1))
  session.deliver(delivery('p2', 2))
  session.deliver(delivery('p3', 2))
  session.deliver(delivery('p4', 1))
  const ids = first.publishes.map((w) => w.packetId)
  const [id1, id2, id3, id4] = ids
  if (id1 === undefined || id2 === undefined || id3 === undefined || id4 === undefined) throw new Error('four sends expected')
  t.ok(session.received(id2), 'PUBREC for p2')
  t.same(first.writes[first.writes.length - 1], { kind: 'pubrel', packetId: id2 }, '[MQTT-4.3.3-4] PUBREC is answered with PUBREL')
  t.equal(session.inflight.get(id2)?.state, 'await-comp')
  t.ok(session.complete(id4, 'await-ack'), 'p4 acknowledged')
  session.detach()
  t.notOk(session.connected)
  session.deliver(delivery('p5', 1)) // queued while away
  const second = new FakeSink()
  session.attach(second)
  t.same(second.writes, [
    { kind: 'publish', topic: 'p1', packetId: id1, dup: true, qos: 1 },
    { kind: 'pubrel', packetId: id2 },
    { kind: 'publish', topic: 'p3', packetId: id3, dup: true, qos: 2 },
    { kind: 'publish', topic: 'p5', packetId: second.publishes[2]?.packetId ?? -1, dup: false, qos: 1 },
  ])
  t.notOk([id1, id2, id3].includes(second.publishes[2]?.packetId ?? -1), 'the queued message gets a fresh id')
})

t.test('[MQTT-3.3.4-9] resending after reattach stays within the new Receive Maximum; the rest follow acks', async (t) => {
  const { session } = setup({ maxInflight: 10 })
  const first = new FakeSink(10)
  session.attach(first)
  for (const topic of ['r1', 'r2', 'r3', 'r4']) session.deliver(delivery(topic, 1))
  session.deliver(delivery('r5', 2))
  const id5 = first.publishes[4]?.packetId ?? -1
  session.received(id5)
  session.detach()
  session.deliver(delivery('later', 1))
  const second = new FakeSink(2)
  session.attach(second)
  // Window 2: the PUBREL for r5 holds one slot, so one PUBLISH is resent.
  t.same(
    second.writes.map((w) => (w.kind === 'pubrel' ? `pubrel ${w.packetId}` : `${w.topic}${w.dup ? ' dup' : ''}`)),
    ['r1 dup', `pubrel ${id5}`],
  )
  // Acknowledge the oldest outstanding packet on this connection, one at a time.
  const written = (id: number): boolean => second.writes.some((w) => w.packetId === id)
  let guard = 0
  for (let id = [...session.inflight.keys()].find(written); id !== undefined && guard++ < 20; id = [...session.inflight.keys()].find(written)) {
    session.complete(id, session.inflight.get(id)?.state ?? 'await-ack')
    const outstanding = [...session.inflight.keys()].filter(written).length
    if (outstanding > 2) t.fail(`${outstanding} unacknowledged packets with a Receive Maximum of 2`)
  }
  t.same(
    second.publishes.map((w) => `${w.topic}${w.dup ? ' dup' : ''}`),
    ['r1 dup', 'r2 dup', 'r3 dup', 'r4 dup', 'later'],
    'resent in order with DUP, and the queued message only after them',
  )
  t.equal(session.inflight.size, 0)
})

t.test('[MQTT-4.3.3-13] PUBCOMP only ends await-comp, PUBACK only await-ack', async (t) => {
  const { session } = setup()
  const sink = new FakeSink()
  session.attach(sink)
  session.deliver(delivery('q2', 2))
  const id = sink.publishes[0]?.packetId ?? -1
  t.notOk(session.complete(id, 'await-comp'), 'PUBCOMP before PUBREC is ignored')
  t.notOk(session.received(999), 'PUBREC for an unknown id')
  t.ok(session.received(id))
  t.notOk(session.complete(id, 'await-ack'), 'PUBACK for a QoS 2 flow is ignored')
  t.ok(session.complete(id, 'await-comp'))
  t.equal(session.inflight.size, 0)
  t.notOk(session.complete(id, 'await-comp'), 'a second PUBCOMP finds nothing')
})

t.test('[MQTT-4.3.3-5] abandon (PUBREC with an error) frees the slot for the queue', async (t) => {
  const { session } = setup({ maxInflight: 1 })
  const sink = new FakeSink()
  session.attach(sink)
  session.deliver(delivery('a', 2))
  session.deliver(delivery('b', 2))
  t.equal(sink.publishes.length, 1)
  t.ok(session.abandon(sink.publishes[0]?.packetId ?? -1))
  t.same(
    sink.publishes.map((w) => w.topic),
    ['a', 'b'],
  )
  t.notOk(session.abandon(12345))
})

t.test('the queue limit drops and counts what does not fit', async (t) => {
  const { session, drops } = setup({ maxQueuedMessages: 2 })
  t.equal(session.deliver(delivery('a', 1)), 'queued')
  t.equal(session.deliver(delivery('b', 1)), 'queued')
  t.equal(session.deliver(delivery('c', 1)), 'dropped-full')
  t.equal(session.deliver(delivery('d', 2)), 'dropped-full')
  t.same(drops.dropped_, [
    { reason: 'dropped-full', topic: 'c' },
    { reason: 'dropped-full', topic: 'd' },
  ])
  t.equal(session.queued, 2)
  const sink = new FakeSink()
  session.attach(sink)
  t.same(
    sink.publishes.map((w) => w.topic),
    ['a', 'b'],
    'the oldest are kept',
  )
})

t.test('the queued-bytes limit drops and counts what does not fit', async (t) => {
  const one = messageBytes(delivery('a', 1, undefined, 'x'.repeat(100)).message)
  const small = messageBytes(delivery('d', 1, undefined, 'x').message)
  t.ok(small < one)
  const { session, drops } = setup({ maxQueuedBytes: 2 * one + small })
  t.equal(session.deliver(delivery('a', 1, undefined, 'x'.repeat(100))), 'queued')
  t.equal(session.deliver(delivery('b', 1, undefined, 'x'.repeat(100))), 'queued')
  t.equal(session.deliver(delivery('c', 1, undefined, 'x'.repeat(100))), 'dropped-full')
  t.equal(session.deliver(delivery('d', 1, undefined, 'x')), 'queued', 'a small one still fits')
  t.same(
    drops.dropped_.map((d) => d.topic),
    ['c'],
  )
  t.equal(session.queuedBytes, 2 * one + small)
  t.equal(session.deliver(delivery('e', 1, undefined, '')), 'dropped-full', 'the limit is reached exactly')
})

t.test('[MQTT-3.3.2-5] expired messages are dropped at pump and counted, the rest delivered', async (t) => {
  const { session, drops, clock } = setup()
  session.deliver(delivery('short', 1, T0 + 1000))
  session.deliver(delivery('long', 1, T0 + 60_000))
  session.deliver(delivery('forever', 2))
  session.deliver(delivery('edge', 1, T0 + 5000))
  clock.now = T0 + 5000
  const sink = new FakeSink()
  session.attach(sink)
  t.same(
    sink.publishes.map((w) => w.topic),
    ['long', 'forever'],
  )
  t.same(drops.expired_, ['short', 'edge'], 'expired at or before now')
  t.equal(session.queued, 0)
  t.equal(session.queuedBytes, 0)
})

t.test('reset drops subscriptions, in-flight, incoming QoS 2 ids and the queue [MQTT-3.1.2-4]', async (t) => {
  const { session } = setup({ maxInflight: 1 })
  const sink = new FakeSink()
  session.attach(sink)
  session.subscribe('a/#', subscription())
  session.holdIncomingQos2(7)
  session.deliver(delivery('a', 1))
  session.deliver(delivery('b', 1))
  session.reset()
  t.equal(session.subscriptions.size, 0)
  t.equal(session.inflight.size, 0)
  t.notOk(session.hasIncomingQos2(7))
  t.equal(session.incomingQos2Count, 0)
  t.equal(session.queued, 0)
  t.equal(session.queuedBytes, 0)
})
