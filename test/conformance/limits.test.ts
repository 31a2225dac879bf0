import type { MqttClient } from 'mqtt'
import t from 'tap'
import { startBroker } from '../helpers/broker.js'
import { mosquitto } from '../helpers/cli.js'
import { connectWithAck, healthyPair, sleep, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'
import { frames, handConnect, PACKET, rawPublish } from '../helpers/wire.js'

// Configured limits: connections, packet size, CONNECT timeout, topic length and depth,
// per-session queues, the outgoing in-flight window and slow consumers.

t.test('[MQTT-3.1.4-2] [MQTT-3.2.2-6] [MQTT-4.13.2-1] limits.maxConnections: the client beyond the limit is refused (v5 0x89, 3.1.1 return code 3)', async (t) => {
  const b = await startBroker(t, { limits: { maxConnections: 2 } })
  const { client: first } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mc-1' })
  await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'mc-2' })

  const v5 = await Wire.open(t, b.port, 5)
  const ack5 = await v5.handshake({ clientId: 'mc-3' })
  t.equal(ack5.reasonCode, 0x89, 'v5: Server busy')
  t.equal(ack5.sessionPresent, false)
  await until(() => v5.isClosed(), 5000, 'refused v5 client closed')
  const v4 = await Wire.open(t, b.port, 4)
  const ack4 = await v4.handshake({ clientId: 'mc-4' })
  t.equal(ack4.returnCode, 3, '3.1.1: Server unavailable')
  await until(() => v4.isClosed(), 5000, 'refused 3.1.1 client closed')
  const cli = await mosquitto(t, 'mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-i', 'mc-cli', '-t', 'mc/t', '-m', 'x']).done
  t.not(cli.code, 0, `mosquitto_pub is refused too (${cli.stderr.trim()})`)
  t.equal(b.app.broker.stats.refusedMaxConnections, 3)
  t.equal(b.app.broker.liveCount, 2)

  // Taking over an existing client id is not a new connection: allowed at the limit.
  const { connack: again } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mc-2' })
  t.equal(again.reasonCode, 0, 'session takeover at the limit is accepted')
  t.equal(b.app.broker.liveCount, 2)

  // Once a client leaves, a new one fits.
  await first.endAsync()
  await until(() => b.app.broker.liveCount === 1, 5000, 'one client left')
  const { connack: fits } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mc-5' })
  t.equal(fits.reasonCode, 0, 'accepted after a slot freed')
  t.equal(b.app.broker.stats.refusedMaxConnections, 3)
})

t.test('[MQTT-3.2.2-15] [MQTT-4.13.1-1] limits.maxPacketSize is announced in the v5 CONNACK and enforced at the byte boundary', async (t) => {
  const b = await startBroker(t, { limits: { maxPacketSize: 1024 } })
  const { connack } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mps-announce' })
  t.equal(connack.properties?.maximumPacketSize, 1024, 'Maximum Packet Size announced')

  const { client: sub, messages } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'mps-sub' })
  await sub.subscribeAsync('m/#', { qos: 0 })
  // rawPublish('m', N bytes) in 3.1.1 is 1 + 2 (length) + 3 (topic) + N bytes long.
  const { wire: fits } = await Wire.connect(t, b.port, 4, { clientId: 'mps-fits' })
  const exact = rawPublish('m', Buffer.alloc(1018, 0x61))
  t.equal(exact.length, 1024)
  fits.sendBytes(exact)
  await until(() => messages.length === 1, 5000, 'the 1024-byte packet delivered')
  t.equal(messages[0]?.payload.length, 1018)
  t.notOk(fits.isClosed(), 'a packet of exactly maxPacketSize is accepted')

  const { wire: over } = await Wire.connect(t, b.port, 5, { clientId: 'mps-over' })
  const oneMore = rawPublish('m', Buffer.alloc(1018, 0x62), { version: 5 })
  t.equal(oneMore.length, 1025)
  over.sendBytes(oneMore)
  await until(() => over.isClosed(), 5000, 'closed for 1025 bytes')
  t.equal(over.disconnectCode(), 0x95, 'DISCONNECT 0x95 Packet too large')
  t.equal(b.app.broker.stats.packetsTooLarge, 1)

  // A 2000-byte PUBLISH from a raw v5 connection, while a healthy client keeps going.
  const healthy = await healthyPair(t, b.url)
  const { wire: big } = await Wire.connect(t, b.port, 5, { clientId: 'mps-2000' })
  big.sendBytes(rawPublish('m/big', Buffer.alloc(2000, 0x63), { version: 5 }))
  await until(() => big.isClosed(), 5000, 'closed for 2000 bytes')
  t.equal(big.disconnectCode(), 0x95)
  await healthy.check()
  t.equal(messages.length, 1, 'the oversized messages were not delivered')
})

t.test('[MQTT-3.1.2-24] [MQTT-3.1.2-25] the broker does not send a client a packet larger than its v5 Maximum Packet Size', async (t) => {
  const b = await startBroker(t)
  const { client: small, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mps-client', properties: { maximumPacketSize: 200 } })
  await small.subscribeAsync('cap/#', { qos: 1 })
  const { client: pub } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'mps-client-pub' })
  await pub.publishAsync('cap/big', Buffer.alloc(500, 0x61), { qos: 1 })
  await pub.publishAsync('cap/big', Buffer.alloc(600, 0x62), { qos: 0 })
  await pub.publishAsync('cap/small', 'fits', { qos: 1 })
  await until(() => messages.length > 0, 5000, 'the small message')
  t.same(
    messages.map((m) => m.topic),
    ['cap/small'],
    'oversized messages were discarded for this client only',
  )
  t.ok(small.connected, 'the client stays connected')
  // Once the small message is acknowledged nothing may remain in flight: the discarded QoS 1
  // message must not hold a slot of the window forever.
  await until(() => b.app.broker.sessions.get('mps-client')?.inflight.size === 0, 5000, 'empty in-flight window')
  t.equal(b.app.broker.sessions.get('mps-client')?.queued, 0, 'nothing left queued')
})

t.test('[MQTT-3.1.0-1] (3.1.4 CONNECT timeout) limits.connectTimeout closes connections that do not complete CONNECT in time', async (t) => {
  const b = await startBroker(t, { limits: { connectTimeout: 1 } })
  const { client: inTime, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'ct-ok' })
  await inTime.subscribeAsync('ct/t', { qos: 0 })
  const silent = await Wire.open(t, b.port, 4)
  const partial = await Wire.open(t, b.port, 4)
  partial.sendBytes(handConnect({ clientId: 'ct-partial' }).subarray(0, 6)) // half a CONNECT
  await until(() => silent.isClosed() && partial.isClosed(), 5000, 'both closed by the CONNECT timeout')
  t.equal(silent.bytes().length, 0)
  t.equal(partial.bytes().length, 0)
  t.equal(b.app.broker.stats.connectTimeouts, 2)
  await sleep(1200)
  t.ok(inTime.connected, 'a client that completed CONNECT is not affected by the timeout')
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'ct-pub' })
  await pub.publishAsync('ct/t', 'still here', { qos: 0 })
  await until(() => messages.length === 1, 5000, 'message for the connected client')
  t.equal(b.app.broker.stats.connectTimeouts, 2)
})

t.test('[MQTT-4.7.3-3] [MQTT-3.8.4-6] [MQTT-3.9.3-1] limits.maxTopicLength / maxTopicLevels: PUBLISH over them closes with 0x90, SUBSCRIBE gets 0x8F / 0x80', async (t) => {
  const b = await startBroker(t, { limits: { maxTopicLength: 32, maxTopicLevels: 4 } })
  const { client: sub, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'tl-sub' })
  await sub.subscribeAsync('#', { qos: 0 })
  const { client: pub } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'tl-pub' })
  const atLimit = ['a'.repeat(32), 'a/b/c/d', 'é'.repeat(16)]
  for (const topic of atLimit) await pub.publishAsync(topic, 'ok', { qos: 1 })
  await until(() => messages.length === 3, 5000, 'topics at the limits delivered')
  t.same(
    messages.map((m) => m.topic),
    atLimit,
    '32 bytes, 4 levels and 16 two-byte characters are all within the limits',
  )

  const tooLong = ['a'.repeat(33), 'a/b/c/d/e', 'é'.repeat(17)]
  for (const topic of tooLong) {
    const { wire: v5 } = await Wire.connect(t, b.port, 5, { clientId: `tl5-${topic.length}` })
    v5.sendBytes(rawPublish(topic, 'x', { version: 5 }))
    await until(() => v5.isClosed(), 5000, 'v5 closed')
    t.equal(v5.disconnectCode(), 0x90, `v5 PUBLISH to ${topic}: DISCONNECT 0x90`)
    const { wire: v4 } = await Wire.connect(t, b.port, 4, { clientId: `tl4-${topic.length}` })
    v4.sendBytes(rawPublish(topic, 'x'))
    await until(() => v4.isClosed(), 5000, '3.1.1 closed')
    t.same(
      v4.packets.map((p) => p.cmd),
      ['connack'],
      `3.1.1 PUBLISH to ${topic}: plain close`,
    )
  }
  await pub.publishAsync('tl/sentinel', 'sentinel', { qos: 1 })
  await until(() => messages.length === 4, 5000, 'sentinel')
  t.equal(messages[3]?.topic, 'tl/sentinel', 'none of the over-limit topics was delivered')

  for (const version of [4, 5] as const) {
    const { wire: w } = await Wire.connect(t, b.port, version, { clientId: `tl-subscribe-${version}` })
    const suback = await w.subscribe(
      [
        { topic: 'b'.repeat(33), qos: 1 },
        { topic: 'a/b/c/d/#', qos: 1 },
        { topic: 'a/b/c/#', qos: 1 },
      ],
      9,
    )
    const failure = version === 5 ? 0x8f : 0x80
    t.same(suback.granted, [failure, failure, 1], `v${version}: SUBACK [${failure}, ${failure}, 1]`)
    t.notOk(w.isClosed(), 'a refused filter does not close the connection')
  }

  const will = await Wire.open(t, b.port, 5)
  const connack = await will.handshake({ clientId: 'tl-will', will: { topic: 'w/w/w/x/y', payload: Buffer.from('x'), qos: 0, retain: false } })
  t.equal(connack.reasonCode, 0x90, 'a will topic over the level limit is refused in CONNACK (0x90)')
  await until(() => will.isClosed(), 5000, 'closed')
})

t.test('[MQTT-3.1.2-23] [MQTT-4.6.0-6] limits.maxQueuedMessages: an offline session keeps the oldest 5 QoS 1 messages, newer ones are dropped and counted', async (t) => {
  const b = await startBroker(t, { limits: { maxQueuedMessages: 5 } })
  const opts = { protocolVersion: 4 as const, clientId: 'mq', clean: false }
  const { client: first } = await connectWithAck(t, b.url, opts)
  await first.subscribeAsync('mq/t', { qos: 1 })
  await first.endAsync()
  await until(() => !b.app.broker.hasLive('mq'), 5000, 'offline')
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'mq-pub' })
  for (let i = 1; i <= 8; i++) await pub.publishAsync('mq/t', `m${i}`, { qos: 1 })
  t.equal(b.app.broker.stats.droppedQueueFull, 3, 'three messages dropped')
  t.equal(b.app.broker.sessions.get('mq')?.queued, 5, 'five queued')

  const { connack, messages } = await connectWithAck(t, b.url, opts)
  t.equal(connack.sessionPresent, true)
  await until(() => messages.length === 5, 5000, 'queued messages')
  await pub.publishAsync('mq/t', 'sentinel', { qos: 1 })
  await until(() => messages.length === 6, 5000, 'sentinel')
  t.same(
    messages.map((m) => m.payload.toString()),
    ['m1', 'm2', 'm3', 'm4', 'm5', 'sentinel'],
    'the newest messages (m6..m8) were the ones dropped',
  )
})

t.test('[MQTT-3.1.2-23] [MQTT-4.6.0-6] limits.maxQueuedBytes bounds an offline session by size', async (t) => {
  // Each queued message counts payload + topic + 32 bytes: 200 + 4 + 32 = 236, so 4 fit in 1000.
  const b = await startBroker(t, { limits: { maxQueuedBytes: 1000 } })
  const opts = { protocolVersion: 5 as const, clientId: 'qb', clean: false, properties: { sessionExpiryInterval: 300 } }
  const { client: first } = await connectWithAck(t, b.url, opts)
  await first.subscribeAsync('qb/t', { qos: 1 })
  await first.endAsync()
  await until(() => !b.app.broker.hasLive('qb'), 5000, 'offline')
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'qb-pub' })
  for (let i = 1; i <= 6; i++) await pub.publishAsync('qb/t', Buffer.alloc(200, 0x30 + i), { qos: 1 })
  t.equal(b.app.broker.stats.droppedQueueFull, 2)
  t.ok((b.app.broker.sessions.get('qb')?.queuedBytes ?? 0) <= 1000, 'queued bytes within the limit')

  const { messages } = await connectWithAck(t, b.url, opts)
  await until(() => messages.length === 4, 5000, 'queued messages')
  await pub.publishAsync('qb/t', 'sentinel', { qos: 1 })
  await until(() => messages.length === 5, 5000, 'sentinel')
  t.same(
    messages.map((m) => m.payload.toString().slice(0, 1)),
    ['1', '2', '3', '4', 's'],
    'the first four were kept, the rest dropped',
  )
})

/**
 * Publishes a QoS 0 `sentinel` and waits for `sub` to receive it: QoS 0 is not held by the
 * in-flight window, so once it arrives every earlier send is done.
 */
async function flush(pub: MqttClient, sub: Wire, topic: string, sentinel: string): Promise<void> {
  await pub.publishAsync(topic, sentinel, { qos: 0 })
  await sub.take('publish', (p) => p.payload.toString() === sentinel)
}

/** QoS 1 PUBLISH packets (not the QoS 0 sentinels) received so far. */
function qos1(w: Wire): { messageId: number; payload: string }[] {
  return w.all('publish').filter((p) => p.qos === 1).map((p) => ({ messageId: p.messageId ?? 0, payload: p.payload.toString() }))
}

t.test('[MQTT-4.9.0-2] [MQTT-4.6.0-6] limits.maxInflight: a subscriber that never acknowledges gets only 2 QoS 1 messages until it acks one', async (t) => {
  const b = await startBroker(t, { limits: { maxInflight: 2 } })
  const { wire: sub } = await Wire.connect(t, b.port, 4, { clientId: 'if-sub' })
  t.same((await sub.subscribe([{ topic: 'if/t', qos: 1 }], 1)).granted, [1])
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'if-pub' })
  for (let i = 1; i <= 5; i++) await pub.publishAsync('if/t', `m${i}`, { qos: 1 })
  await flush(pub, sub, 'if/t', 'sentinel-1')
  t.same(
    qos1(sub).map((p) => p.payload),
    ['m1', 'm2'],
    'two in flight, three held back',
  )
  t.equal(b.app.broker.sessions.get('if-sub')?.queued, 3)

  sub.send({ cmd: 'puback', messageId: qos1(sub)[0]?.messageId ?? 0 })
  await until(() => qos1(sub).length === 3, 5000, 'third message after one PUBACK')
  await flush(pub, sub, 'if/t', 'sentinel-2')
  t.same(
    qos1(sub).map((p) => p.payload),
    ['m1', 'm2', 'm3'],
    'exactly one more after one acknowledgement',
  )

  for (const p of qos1(sub).slice(1)) sub.send({ cmd: 'puback', messageId: p.messageId })
  await until(() => qos1(sub).length === 5, 5000, 'the rest after acknowledging')
  t.same(
    qos1(sub).map((p) => p.payload),
    ['m1', 'm2', 'm3', 'm4', 'm5'],
    'in order',
  )
})

t.test('[MQTT-3.3.4-9] [MQTT-4.9.0-1] a v5 client Receive Maximum of 1 narrows the window below maxInflight', async (t) => {
  const b = await startBroker(t, { limits: { maxInflight: 10 } })
  const { wire: sub } = await Wire.connect(t, b.port, 5, { clientId: 'rm-sub', properties: { receiveMaximum: 1 } })
  t.same((await sub.subscribe([{ topic: 'rm/t', qos: 1 }], 1)).granted, [1])
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'rm-pub' })
  for (let i = 1; i <= 3; i++) await pub.publishAsync('rm/t', `m${i}`, { qos: 1 })
  await flush(pub, sub, 'rm/t', 'sentinel')
  t.same(
    qos1(sub).map((p) => p.payload),
    ['m1'],
    'one unacknowledged message at a time',
  )
  sub.send({ cmd: 'puback', messageId: qos1(sub)[0]?.messageId ?? 0 })
  await until(() => qos1(sub).length === 2, 5000, 'next message after PUBACK')
  t.equal(qos1(sub)[1]?.payload, 'm2')
})

t.test('[MQTT-3.3.4-7] limits.receiveMaximum: a v5 client with more unacknowledged incoming QoS 2 messages gets DISCONNECT 0x93', async (t) => {
  const b = await startBroker(t, { limits: { receiveMaximum: 3 } })
  const healthy = await healthyPair(t, b.url)
  const { wire: w, connack } = await Wire.connect(t, b.port, 5, { clientId: 'rx-max' })
  t.equal(connack.properties?.receiveMaximum, 3, 'Receive Maximum 3 announced')
  for (let id = 1; id <= 3; id++) w.sendBytes(rawPublish('rx/t', `q2-${id}`, { version: 5, qos: 2, id }))
  await until(() => w.all('pubrec').length === 3, 5000, 'three PUBRECs')
  t.notOk(w.isClosed(), 'three unreleased QoS 2 messages are within the limit')
  w.sendBytes(rawPublish('rx/t', 'q2-4', { version: 5, qos: 2, id: 4 }))
  await until(() => w.isClosed(), 5000, 'closed for the fourth')
  t.equal(w.disconnectCode(), 0x93, 'Receive Maximum exceeded')
  await healthy.check()
})

const BATCH = 500
const BATCHES = 40
const PAYLOAD = Buffer.alloc(1024, 0x78)

/** `BATCH` QoS 0 PUBLISH packets as one buffer; the payload starts with the message number. */
function batchBytes(start: number): Buffer {
  const parts: Buffer[] = []
  for (let i = start; i < start + BATCH; i++) {
    const payload = Buffer.from(PAYLOAD)
    payload.writeUInt32BE(i, 0)
    parts.push(rawPublish('sc/data', payload))
  }
  return Buffer.concat(parts)
}

interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * A raw subscriber that stops reading (`slow`), a normal MQTT.js subscriber and a raw
 * publisher; `pump` publishes batches of 1 KB QoS 0 messages, each batch waited for at the
 * normal subscriber so only the slow one can fall behind.
 */
async function slowConsumerSetup(t: Teardown, policy: 'drop' | 'disconnect', slowVersion: 4 | 5) {
  const b = await startBroker(t, { limits: { maxWriteBuffer: 65_536, slowConsumerPolicy: policy } })
  const { wire: slow } = await Wire.connect(t, b.port, slowVersion, { clientId: 'slow' })
  const suback = await slow.subscribe(
    [
      { topic: 'sc/#', qos: 0 },
      { topic: 'sc/end', qos: 1 },
    ],
    1,
  )
  slow.socket.pause() // reads nothing more until resumed
  const { client: normal } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'normal' })
  let normalCount = 0
  let normalInOrder = true
  normal.on('message', (topic, payload) => {
    if (topic !== 'sc/data') return
    if (payload.readUInt32BE(0) !== normalCount) normalInOrder = false
    normalCount++
  })
  await normal.subscribeAsync('sc/#', { qos: 0 })
  const { wire: pub } = await Wire.connect(t, b.port, 4, { clientId: 'fast-pub' })
  let sent = 0
  return {
    b,
    slow,
    pub,
    granted: suback.granted,
    sent: () => sent,
    normalCount: () => normalCount,
    normalInOrder: () => normalInOrder,
    /** Sends up to `batches` batches, each waited for at the normal subscriber, until `stop`. */
    async pump(batches: number, stop: () => boolean = () => false): Promise<void> {
      for (let i = 0; i < batches && !stop(); i++) {
        pub.sendBytes(batchBytes(sent))
        sent += BATCH
        await until(() => normalCount === sent, 20_000, `normal subscriber to receive ${sent} messages`)
      }
    },
  }
}

t.test('[MQTT-4.6.0-6] slow consumer (policy drop): a subscriber that never reads does not make the broker buffer everything', async (t) => {
  const s = await slowConsumerSetup(t, 'drop', 4)
  t.same(s.granted, [0, 1])
  await s.pump(BATCHES)
  const sent = s.sent()
  t.equal(sent, BATCH * BATCHES, `published ${sent} messages of 1 KB`)
  t.equal(s.normalCount(), sent, 'the normal subscriber received every message')
  t.ok(s.normalInOrder(), 'in order')
  const dropped = s.b.app.broker.stats.droppedSlowConsumer
  t.ok(dropped > 0, `messages for the slow consumer were dropped (${dropped})`)
  t.ok(s.b.app.broker.hasLive('slow'), 'policy drop keeps the slow consumer connected')

  // Once it reads again it gets what was buffered, then a QoS 1 end marker that waited in its queue.
  s.slow.socket.resume()
  s.pub.sendBytes(rawPublish('sc/end', 'end', { qos: 1, id: 1 }))
  await s.slow.take('publish', (p) => p.topic === 'sc/end', 15_000)
  const got = s.slow.all('publish').filter((p) => p.topic === 'sc/data').length
  t.ok(got < sent, `the slow consumer received only part of the stream (${got} of ${sent})`)
  t.equal(got + dropped, sent, 'every message was either delivered to it or counted as dropped')
  t.equal(s.b.app.broker.stats.droppedSlowConsumer, dropped, 'nothing dropped once it reads again')
  t.notOk(s.slow.isClosed())
})

t.test('[MQTT-4.13.2-1] slow consumer (policy disconnect): the subscriber that never reads is disconnected (0x97) and counted', async (t) => {
  const s = await slowConsumerSetup(t, 'disconnect', 5)
  const stats = s.b.app.broker.stats
  await s.pump(BATCHES, () => stats.slowConsumerDisconnects > 0)
  t.equal(stats.slowConsumerDisconnects, 1, 'one slow-consumer disconnect')
  t.ok(s.sent() < BATCH * BATCHES, 'detected before the whole stream was sent')
  t.notOk(s.b.app.broker.hasLive('slow'), 'the slow consumer is no longer connected')
  t.equal(s.normalCount(), s.sent(), 'the normal subscriber received every message published')
  s.slow.socket.resume()
  await until(() => s.slow.isClosed(), 10_000, 'slow consumer socket closed')
  const last = frames(s.slow.bytes()).at(-1)
  t.equal(last?.type, PACKET.DISCONNECT, 'its last packet is a DISCONNECT')
  t.equal(last?.body[0], 0x97, 'reason code 0x97 Quota exceeded')

  // The remaining subscriber keeps receiving after the disconnect.
  const before = s.sent()
  await s.pump(2)
  t.equal(s.normalCount(), before + 2 * BATCH)
  t.ok(s.normalInOrder(), 'in order throughout')
})
