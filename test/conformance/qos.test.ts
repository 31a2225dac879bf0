import type { Test } from 'tap'
import t from 'tap'
import { startBroker } from '../helpers/broker.js'
import { mosquitto, mosquittoPub } from '../helpers/cli.js'
import { collect, connectClient, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'

type QoS = 0 | 1 | 2
const QOS: readonly QoS[] = [0, 1, 2]

// Delivery at min(published QoS, granted QoS): [MQTT-3.8.4-6] in 3.1.1, [MQTT-3.8.4-8] in 5.0.
for (const version of [4, 5] as const) {
  const other = version === 4 ? 5 : 4
  t.test(
    `MQTT.js v${version} subscribers, v${other} publisher: PUBLISH at QoS 0/1/2 both ways, delivered at min(published, granted) [MQTT-3.8.4-6] [MQTT-3.8.4-8] [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1]`,
    async (t) => {
      const b = await startBroker(t)
      const subs: { qos: QoS; got: ReturnType<typeof collect> }[] = []
      for (const qos of QOS) {
        const c = await connectClient(t, b.url, { protocolVersion: version, clientId: `qos-sub-${qos}` })
        const got = collect(c)
        const granted = await c.subscribeAsync('qos/#', { qos })
        t.equal(granted[0]?.qos, qos, `SUBACK grants QoS ${qos}`)
        subs.push({ qos, got })
      }
      const pub = await connectClient(t, b.url, { protocolVersion: other, clientId: 'qos-pub' })
      // publishAsync resolves only once the QoS 1 (PUBACK) and QoS 2 (PUBREC/PUBREL/PUBCOMP) flows complete.
      for (const qos of QOS) await pub.publishAsync(`qos/${qos}`, `at-${qos}`, { qos })
      for (const s of subs) {
        await until(() => s.got.length === 3, 5000, `3 messages at subscription QoS ${s.qos}`)
        for (const qos of QOS) {
          const m = s.got.find((r) => r.topic === `qos/${qos}`)
          t.equal(m?.payload.toString(), `at-${qos}`)
          t.equal(m?.packet.qos, Math.min(qos, s.qos), `published at ${qos}, subscribed at ${s.qos}`)
        }
      }
    },
  )
}

t.test('on the wire: QoS 0 has no packet id, QoS 1/2 carry one, DUP=0 on first delivery, full QoS 2 handshake [MQTT-4.3.1-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2] [MQTT-3.3.1-1] [MQTT-4.3.3-11]', async (t) => {
  const b = await startBroker(t)
  const { wire: sub } = await Wire.connect(t, b.port, 4, { clientId: 'wire-sub' })
  const suback = await sub.subscribe([{ topic: 'w/#', qos: 2 }], 1)
  t.same(suback.granted, [2])
  const { wire: pub } = await Wire.connect(t, b.port, 5, { clientId: 'wire-pub' })
  await pub.publish({ topic: 'w/0', payload: 'zero', qos: 0 })
  await pub.publish({ topic: 'w/1', payload: 'one', qos: 1, messageId: 11 })
  await pub.publish({ topic: 'w/2', payload: 'two', qos: 2, messageId: 12 })
  const p0 = await sub.take('publish', (p) => p.topic === 'w/0')
  t.equal(p0.qos, 0)
  t.equal(p0.dup, false)
  t.notOk(p0.messageId, 'QoS 0 PUBLISH has no packet identifier')
  const p1 = await sub.take('publish', (p) => p.topic === 'w/1')
  t.equal(p1.qos, 1)
  t.equal(p1.dup, false)
  t.ok((p1.messageId ?? 0) > 0, 'QoS 1 PUBLISH has a non-zero packet identifier')
  sub.send({ cmd: 'puback', messageId: p1.messageId ?? 0 })
  const p2 = await sub.take('publish', (p) => p.topic === 'w/2')
  t.equal(p2.qos, 2)
  t.equal(p2.dup, false)
  t.ok((p2.messageId ?? 0) > 0)
  t.not(p2.messageId, p1.messageId)
  sub.send({ cmd: 'pubrec', messageId: p2.messageId ?? 0 })
  const rel = await sub.take('pubrel', (p) => p.messageId === p2.messageId)
  t.equal(rel.messageId, p2.messageId, 'PUBREL answers PUBREC with the same id')
  sub.send({ cmd: 'pubcomp', messageId: p2.messageId ?? 0 })
  // The broker, as receiver, answered the publisher: PUBACK 11, PUBREC 12, PUBCOMP 12 (Wire.publish waited for them).
  t.equal(pub.all('puback')[0]?.messageId, 11)
  t.equal(pub.all('pubrec')[0]?.messageId, 12)
  t.equal(pub.all('pubcomp')[0]?.messageId, 12)
})

t.test('mosquitto_pub -q 0/1/2 to mosquitto_sub -q 0/1/2: delivered at min(published, granted) [MQTT-3.8.4-6] [MQTT-3.8.4-8]', async (t) => {
  const b = await startBroker(t)
  const subs = QOS.map((qos) => {
    const id = `mosq-sub-q${qos}`
    const tool = mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', 'mqttv5', '-i', id, '-q', String(qos), '-t', 'mq/#', '-F', '%q %t %p', '-C', '3', '-W', '20'], 25_000)
    return { qos, id, tool }
  })
  for (const s of subs) {
    await until(() => b.app.broker.sessions.get(s.id)?.subscriptions.has('mq/#') === true, 10_000, `${s.id} subscribed`)
  }
  for (const qos of QOS) await mosquittoPub(t, b.port, ['-V', 'mqttv311', '-q', String(qos), '-t', `mq/${qos}`, '-m', `m${qos}`])
  for (const s of subs) {
    const r = await s.tool.done
    t.equal(r.code, 0, `${s.id} got its 3 messages and exited: ${r.stderr}`)
    const lines = r.stdout.trim().split('\n').sort()
    t.same(
      lines,
      QOS.map((qos) => `${Math.min(qos, s.qos)} mq/${qos} m${qos}`),
      `subscription QoS ${s.qos}`,
    )
  }
})

t.test('QoS 2 exactly once across a reconnect: after PUBREC the broker resends PUBREL, never the PUBLISH [MQTT-4.4.0-1] [MQTT-4.3.3-6] [MQTT-4.3.3-4] [MQTT-3.2.2-2]', async (t) => {
  const b = await startBroker(t)
  const { wire: s1 } = await Wire.connect(t, b.port, 4, { clientId: 'q2-sub', clean: false })
  await s1.subscribe([{ topic: 'x/q2', qos: 2 }], 1)
  const pub = await connectClient(t, b.url, { clientId: 'q2-pub' })
  await pub.publishAsync('x/q2', 'once', { qos: 2 })
  const p = await s1.take('publish')
  t.equal(p.qos, 2)
  t.equal(p.payload.toString(), 'once')
  const id = p.messageId ?? 0
  s1.send({ cmd: 'pubrec', messageId: id })
  await s1.take('pubrel', (r) => r.messageId === id)
  await s1.drop() // before PUBCOMP

  const { wire: s2, connack } = await Wire.connect(t, b.port, 4, { clientId: 'q2-sub', clean: false })
  t.equal(connack.sessionPresent, true, 'the session is resumed')
  await s2.take('pubrel', (r) => r.messageId === id)
  s2.send({ cmd: 'pubcomp', messageId: id })
  await pub.publishAsync('x/q2', 'sentinel', { qos: 2 })
  const sentinel = await s2.take('publish', (m) => m.payload.toString() === 'sentinel')
  t.same(
    s2.publishes().map((m) => m.payload.toString()),
    ['sentinel'],
    'the released PUBLISH is not sent again',
  )
  t.equal(s2.all('pubrel').length, 1, 'PUBREL resent once')
  s2.send({ cmd: 'pubrec', messageId: sentinel.messageId ?? 0 })
  await s2.take('pubrel', (r) => r.messageId === sentinel.messageId)
  s2.send({ cmd: 'pubcomp', messageId: sentinel.messageId ?? 0 })
  await s2.disconnect()

  // After PUBCOMP nothing of either flow comes back on the next connection.
  const { wire: s3 } = await Wire.connect(t, b.port, 4, { clientId: 'q2-sub', clean: false })
  await pub.publishAsync('x/q2', 'sentinel-2', { qos: 1 })
  await s3.take('publish', (m) => m.payload.toString() === 'sentinel-2')
  t.same(
    s3.publishes().map((m) => m.payload.toString()),
    ['sentinel-2'],
  )
  t.equal(s3.all('pubrel').length, 0, 'no PUBREL after PUBCOMP')
})

for (const version of [4, 5] as const) {
  const session = version === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false }

  /**
   * A raw subscriber with a persistent session gets `payload` on x/`name` at `qos`, drops the
   * connection without acknowledging it and connects again.
   */
  const dropUnacknowledged = async (t: Test, name: string, qos: 1 | 2, payload: string) => {
    const b = await startBroker(t)
    const { wire: s1 } = await Wire.connect(t, b.port, version, { clientId: `${name}-sub`, ...session })
    await s1.subscribe([{ topic: `x/${name}`, qos }], 1)
    const pub = await connectClient(t, b.url, { clientId: `${name}-pub`, protocolVersion: version })
    await pub.publishAsync(`x/${name}`, payload, { qos })
    const first = await s1.take('publish')
    await s1.drop()
    const { wire: s2, connack } = await Wire.connect(t, b.port, version, { clientId: `${name}-sub`, ...session })
    return { pub, first, s2, connack }
  }

  t.test(`v${version}: an unacknowledged QoS 1 PUBLISH is resent with DUP=1 and the same packet id after reconnect [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.3.2-3]`, async (t) => {
    const { pub, first, s2, connack } = await dropUnacknowledged(t, 'q1', 1, 'again')
    t.equal(first.dup, false, 'first delivery has DUP=0')
    t.equal(connack.sessionPresent, true)
    const again = await s2.take('publish')
    t.equal(again.dup, true, 'redelivery has DUP=1')
    t.equal(again.messageId, first.messageId, 'same packet identifier')
    t.equal(again.qos, 1)
    t.equal(again.topic, 'x/q1')
    t.equal(again.payload.toString(), 'again')
    s2.send({ cmd: 'puback', messageId: again.messageId ?? 0 })
    await pub.publishAsync('x/q1', 'sentinel', { qos: 1 })
    const sentinel = await s2.take('publish', (m) => m.payload.toString() === 'sentinel')
    t.equal(sentinel.dup, false, 'a new message has DUP=0')
    t.equal(s2.publishes().length, 2, 'acknowledged message not sent a third time')
  })

  t.test(`v${version}: a QoS 2 PUBLISH without PUBREC is resent with DUP=1 and the same id after reconnect [MQTT-4.4.0-1] [MQTT-4.3.3-3] [MQTT-3.3.1-1]`, async (t) => {
    const { pub, first, s2 } = await dropUnacknowledged(t, 'q2n', 2, 'unreceived')
    t.equal(first.dup, false)
    const again = await s2.take('publish')
    t.equal(again.dup, true)
    t.equal(again.messageId, first.messageId)
    t.equal(again.qos, 2)
    t.equal(again.payload.toString(), 'unreceived')
    s2.send({ cmd: 'pubrec', messageId: again.messageId ?? 0 })
    await s2.take('pubrel', (r) => r.messageId === again.messageId)
    s2.send({ cmd: 'pubcomp', messageId: again.messageId ?? 0 })
    await pub.publishAsync('x/q2n', 'sentinel', { qos: 2 })
    await s2.take('publish', (m) => m.payload.toString() === 'sentinel')
    t.equal(s2.publishes().length, 2)
  })
}

for (const version of [4, 5] as const) {
  t.test(`v${version}: a resent incoming QoS 2 PUBLISH (same id, DUP=1) before PUBREL is acknowledged but delivered once [MQTT-4.3.3-10] [MQTT-4.3.3-12]`, async (t) => {
    const b = await startBroker(t)
    const sub = await connectClient(t, b.url, { clientId: 'in2-sub' })
    const got = collect(sub)
    await sub.subscribeAsync('in/q2', { qos: 1 })
    const { wire: p } = await Wire.connect(t, b.port, version, { clientId: 'in2-pub' })
    const publish = { cmd: 'publish', topic: 'in/q2', payload: 'first', qos: 2, messageId: 7, retain: false } as const
    p.send({ ...publish, dup: false })
    await p.take('pubrec', (r) => r.messageId === 7)
    p.send({ ...publish, dup: true })
    await p.take('pubrec', (r) => r.messageId === 7)
    p.send({ ...publish, dup: true })
    await p.take('pubrec', (r) => r.messageId === 7)
    p.send({ cmd: 'pubrel', messageId: 7 })
    const comp = await p.take('pubcomp', (r) => r.messageId === 7)
    if (version === 5) t.equal(comp.reasonCode, 0, 'PUBCOMP success: the id was known')
    // After PUBCOMP the same id starts a new message [MQTT-4.3.3-12].
    await p.publish({ topic: 'in/q2', payload: 'second', qos: 2, messageId: 7 })
    await p.publish({ topic: 'in/q2', payload: 'sentinel', qos: 1, messageId: 8 })
    await until(() => got.some((m) => m.payload.toString() === 'sentinel'))
    t.same(
      got.map((m) => m.payload.toString()),
      ['first', 'second', 'sentinel'],
    )
  })

  t.test(`v${version}: a QoS 2 PUBLISH resent after the publisher reconnects (before PUBREL) is delivered once [MQTT-4.3.3-10] [MQTT-4.4.0-1]`, async (t) => {
    const b = await startBroker(t)
    const sub = await connectClient(t, b.url, { clientId: 'in2r-sub' })
    const got = collect(sub)
    await sub.subscribeAsync('in/q2r', { qos: 1 })
    const session = version === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false }
    const { wire: p1 } = await Wire.connect(t, b.port, version, { clientId: 'in2r-pub', ...session })
    p1.send({ cmd: 'publish', topic: 'in/q2r', payload: 'only-once', qos: 2, messageId: 9, dup: false, retain: false })
    await p1.take('pubrec', (r) => r.messageId === 9)
    await p1.drop()
    const { wire: p2, connack } = await Wire.connect(t, b.port, version, { clientId: 'in2r-pub', ...session })
    t.equal(connack.sessionPresent, true)
    p2.send({ cmd: 'publish', topic: 'in/q2r', payload: 'only-once', qos: 2, messageId: 9, dup: true, retain: false })
    await p2.take('pubrec', (r) => r.messageId === 9)
    p2.send({ cmd: 'pubrel', messageId: 9 })
    await p2.take('pubcomp', (r) => r.messageId === 9)
    await p2.publish({ topic: 'in/q2r', payload: 'sentinel', qos: 1, messageId: 10 })
    await until(() => got.some((m) => m.payload.toString() === 'sentinel'))
    t.same(
      got.map((m) => m.payload.toString()),
      ['only-once', 'sentinel'],
    )
  })
}

t.test('packet identifiers are never reused while in flight [MQTT-2.2.1-4] [MQTT-2.3.1-1] [MQTT-4.3.2-1]', async (t) => {
  const b = await startBroker(t)
  const { wire: sub } = await Wire.connect(t, b.port, 4, { clientId: 'ids-sub' })
  await sub.subscribe([{ topic: 'ids/#', qos: 2 }], 1)
  const pub = await connectClient(t, b.url, { clientId: 'ids-pub' })
  for (let i = 0; i < 10; i++) await pub.publishAsync(`ids/${i}`, `m${i}`, { qos: 1 })
  await until(() => sub.publishes().length === 10, 5000, '10 unacknowledged QoS 1 messages')
  const first = sub.publishes()
  const ids = first.map((p) => p.messageId ?? 0)
  t.equal(new Set(ids).size, 10, `10 distinct ids: ${ids.join(',')}`)
  t.notOk(ids.includes(0), 'no id is 0')
  // Free every other slot; the next messages must not take an id still held by the rest.
  const held = new Set<number>()
  first.forEach((p, i) => {
    if (i % 2 === 0) sub.send({ cmd: 'puback', messageId: p.messageId ?? 0 })
    else held.add(p.messageId ?? 0)
  })
  for (let i = 10; i < 20; i++) await pub.publishAsync(`ids/${i}`, `m${i}`, { qos: i % 3 === 0 ? 2 : 1 })
  await until(() => sub.publishes().length === 20, 5000, '10 more messages')
  const next = sub.publishes().slice(10)
  const nextIds = next.map((p) => p.messageId ?? 0)
  t.equal(new Set(nextIds).size, 10, 'the new messages have distinct ids')
  t.notOk(
    nextIds.some((id) => held.has(id)),
    'no id of an unacknowledged message is reused',
  )
  t.notOk(nextIds.includes(0))
  t.notOk(
    next.some((p) => p.dup),
    'all first deliveries',
  )
})

t.test('v5 Receive Maximum from the client: at most 3 unacknowledged QoS 1/2 PUBLISH in flight [MQTT-3.3.4-9] [MQTT-3.3.4-10]', async (t) => {
  const b = await startBroker(t)
  const { wire: sub } = await Wire.connect(t, b.port, 5, { clientId: 'rm-sub', properties: { receiveMaximum: 3 } })
  await sub.subscribe([{ topic: 'rm/#', qos: 2 }], 1)
  const pub = await connectClient(t, b.url, { clientId: 'rm-pub', protocolVersion: 5 })
  for (let i = 0; i < 8; i++) await pub.publishAsync('rm/t', `m${i}`, { qos: i === 2 ? 2 : 1 })
  // QoS 0 is not held back by the window [MQTT-3.3.4-10], so it shows what else was sent.
  await pub.publishAsync('rm/t', 'sentinel-1', { qos: 0 })
  await sub.take('publish', (p) => p.payload.toString() === 'sentinel-1')
  const inflight = () => sub.publishes().filter((p) => p.qos > 0)
  t.same(
    inflight().map((p) => p.payload.toString()),
    ['m0', 'm1', 'm2'],
    'only 3 sent before any acknowledgement',
  )
  // PUBREC frees nothing until PUBCOMP; PUBACK frees one slot.
  const q2 = inflight()[2]
  sub.send({ cmd: 'pubrec', messageId: q2?.messageId ?? 0 })
  await sub.take('pubrel', (r) => r.messageId === q2?.messageId)
  await pub.publishAsync('rm/t', 'sentinel-2', { qos: 0 })
  await sub.take('publish', (p) => p.payload.toString() === 'sentinel-2')
  t.equal(inflight().length, 3, 'PUBREC does not open the window')
  sub.send({ cmd: 'puback', messageId: inflight()[0]?.messageId ?? 0 })
  await until(() => inflight().length === 4, 5000, 'one more after one PUBACK')
  await pub.publishAsync('rm/t', 'sentinel-3', { qos: 0 })
  await sub.take('publish', (p) => p.payload.toString() === 'sentinel-3')
  t.equal(inflight().length, 4, 'exactly one more after one PUBACK')
  // Acknowledge everything as it arrives: the rest follows, in order.
  const acked = new Set<number>([inflight()[0]?.messageId ?? 0])
  sub.send({ cmd: 'pubcomp', messageId: q2?.messageId ?? 0 })
  acked.add(q2?.messageId ?? 0)
  await until(
    () => {
      for (const p of inflight()) {
        const id = p.messageId ?? 0
        if (p.qos === 1 && !acked.has(id)) {
          acked.add(id)
          sub.send({ cmd: 'puback', messageId: id })
        }
      }
      return inflight().length === 8
    },
    5000,
    'all 8 messages',
  )
  t.same(
    inflight().map((p) => p.payload.toString()),
    ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'],
  )
})

t.test("v5: the broker's Receive Maximum bounds incoming QoS 2; exceeding it gets DISCONNECT 0x93 [MQTT-3.3.4-7] (§3.2.2.3.3)", async (t) => {
  const b = await startBroker(t, { limits: { receiveMaximum: 2 } })
  const sub = await connectClient(t, b.url, { clientId: 'brm-sub' })
  const got = collect(sub)
  await sub.subscribeAsync('brm/#', { qos: 1 })
  const { wire: p, connack } = await Wire.connect(t, b.port, 5, { clientId: 'brm-pub' })
  t.equal(connack.properties?.receiveMaximum, 2, 'CONNACK announces Receive Maximum 2')
  // Within the limit: two QoS 2 messages awaiting PUBREL, then one released and another sent.
  p.send({ cmd: 'publish', topic: 'brm/1', payload: 'a', qos: 2, messageId: 1, dup: false, retain: false })
  p.send({ cmd: 'publish', topic: 'brm/2', payload: 'b', qos: 2, messageId: 2, dup: false, retain: false })
  await p.take('pubrec', (r) => r.messageId === 1)
  await p.take('pubrec', (r) => r.messageId === 2)
  p.send({ cmd: 'pubrel', messageId: 1 })
  await p.take('pubcomp', (r) => r.messageId === 1)
  p.send({ cmd: 'publish', topic: 'brm/3', payload: 'c', qos: 2, messageId: 3, dup: false, retain: false })
  await p.take('pubrec', (r) => r.messageId === 3)
  t.notOk(p.isClosed(), 'still connected at exactly the limit')
  // One more while 2 and 3 await PUBREL.
  p.send({ cmd: 'publish', topic: 'brm/4', payload: 'd', qos: 2, messageId: 4, dup: false, retain: false })
  const d = await p.take('disconnect')
  t.equal(d.reasonCode, 0x93, 'DISCONNECT Receive Maximum exceeded')
  await p.closed
  t.equal(p.all('pubrec').filter((r) => r.messageId === 4).length, 0, 'the excess PUBLISH is not acknowledged')
  const pub2 = await connectClient(t, b.url, { clientId: 'brm-pub2' })
  await pub2.publishAsync('brm/sentinel', 's', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'brm/sentinel'))
  t.same(
    got.map((m) => m.payload.toString()),
    ['a', 'b', 'c', 's'],
    'the excess message is not delivered',
  )
})

t.test('v5 PUBACK/PUBREC 0x10 No matching subscribers, 0x00 once someone subscribes; 3.1.1 acks carry no reason code (§3.4.2.1) [MQTT-4.3.2-4]', async (t) => {
  const b = await startBroker(t)
  const { wire: p } = await Wire.connect(t, b.port, 5, { clientId: 'nms-pub' })
  p.send({ cmd: 'publish', topic: 'nms/a', payload: 'x', qos: 1, messageId: 1, dup: false, retain: false })
  t.equal((await p.take('puback', (r) => r.messageId === 1)).reasonCode, 0x10, 'PUBACK 0x10')
  p.send({ cmd: 'publish', topic: 'nms/a', payload: 'x', qos: 2, messageId: 2, dup: false, retain: false })
  t.equal((await p.take('pubrec', (r) => r.messageId === 2)).reasonCode, 0x10, 'PUBREC 0x10')
  p.send({ cmd: 'pubrel', messageId: 2 })
  t.equal((await p.take('pubcomp', (r) => r.messageId === 2)).reasonCode, 0, '0x10 is a success code: the QoS 2 flow completes')

  // MQTT.js sees the same code on the PUBACK it resolves with.
  const mq = await connectClient(t, b.url, { clientId: 'nms-mqttjs', protocolVersion: 5 })
  const acks: { cmd: string; reasonCode?: number }[] = []
  mq.on('packetreceive', (packet) => {
    if (packet.cmd === 'puback') acks.push(packet)
  })
  await mq.publishAsync('nms/b', 'x', { qos: 1 })
  t.equal(acks[0]?.reasonCode, 0x10, 'MQTT.js sees PUBACK 0x10 and treats it as success')

  const sub = await connectClient(t, b.url, { clientId: 'nms-sub' })
  await sub.subscribeAsync('nms/#', { qos: 0 })
  p.send({ cmd: 'publish', topic: 'nms/a', payload: 'x', qos: 1, messageId: 3, dup: false, retain: false })
  t.equal((await p.take('puback', (r) => r.messageId === 3)).reasonCode, 0, 'PUBACK success with a subscriber')

  const { wire: v4 } = await Wire.connect(t, b.port, 4, { clientId: 'nms-v4' })
  v4.send({ cmd: 'publish', topic: 'nobody/here', payload: 'x', qos: 1, messageId: 4, dup: false, retain: false })
  const ack4 = await v4.take('puback', (r) => r.messageId === 4)
  t.equal(ack4.reasonCode, undefined, '3.1.1 PUBACK has no reason code')
})

t.test('QoS 1 messages keep their order per topic, also through a small receive window [MQTT-4.6.0-5] [MQTT-4.6.0-6]', async (t) => {
  const b = await startBroker(t)
  const n = 60
  const a = await connectClient(t, b.url, { clientId: 'ord-v4' })
  const gotA = collect(a)
  await a.subscribeAsync('ord/#', { qos: 1 })
  const c = await connectClient(t, b.url, { clientId: 'ord-v5', protocolVersion: 5, properties: { receiveMaximum: 2 } })
  const gotC = collect(c)
  await c.subscribeAsync('ord/+', { qos: 2 })
  const pub = await connectClient(t, b.url, { clientId: 'ord-pub', protocolVersion: 5 })
  const expected: string[] = []
  const sends: Promise<unknown>[] = []
  for (let i = 0; i < n; i++) {
    expected.push(String(i))
    sends.push(pub.publishAsync('ord/t', String(i), { qos: 1 }))
  }
  await Promise.all(sends)
  await until(() => gotA.length === n && gotC.length === n, 10_000, `${n} messages each`)
  t.same(
    gotA.map((m) => m.payload.toString()),
    expected,
    'v4 subscriber, order kept',
  )
  t.same(
    gotC.map((m) => m.payload.toString()),
    expected,
    'v5 subscriber with Receive Maximum 2, order kept',
  )
  t.ok(
    gotC.every((m) => m.packet.qos === 1),
    'delivered at QoS 1',
  )
})

t.test('queued and in-flight QoS 1 messages are resent in their original order after reconnect [MQTT-4.6.0-1] [MQTT-4.4.0-1]', async (t) => {
  const b = await startBroker(t, { limits: { maxInflight: 4 } })
  const { wire: s1 } = await Wire.connect(t, b.port, 4, { clientId: 'reord-sub', clean: false })
  await s1.subscribe([{ topic: 'reord', qos: 1 }], 1)
  const pub = await connectClient(t, b.url, { clientId: 'reord-pub' })
  for (let i = 0; i < 10; i++) await pub.publishAsync('reord', `m${i}`, { qos: 1 })
  await until(() => s1.publishes().length === 4, 5000, 'a full window of 4')
  const window = s1.publishes()
  await s1.drop()
  const { wire: s2 } = await Wire.connect(t, b.port, 4, { clientId: 'reord-sub', clean: false })
  const acked = new Set<number>()
  await until(
    () => {
      for (const p of s2.publishes()) {
        const id = p.messageId ?? 0
        if (!acked.has(id)) {
          acked.add(id)
          s2.send({ cmd: 'puback', messageId: id })
        }
      }
      return s2.publishes().length >= 10
    },
    5000,
    '10 messages after reconnect',
  )
  const got = s2.publishes()
  t.same(
    got.map((p) => p.payload.toString()),
    ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9'],
  )
  t.same(
    got.slice(0, 4).map((p) => [p.messageId, p.dup]),
    window.map((p) => [p.messageId, true]),
    'the 4 in flight come back first, DUP=1, same ids',
  )
  t.ok(
    got.slice(4).every((p) => !p.dup),
    'queued messages are first deliveries',
  )
})

t.test('v5: redelivery after reconnect respects the new connection’s Receive Maximum, keeping ids and order [MQTT-3.3.4-9] [MQTT-4.4.0-1] [MQTT-4.6.0-1]', async (t) => {
  const b = await startBroker(t)
  const session = { clientId: 'rm-re-sub', clean: false, properties: { sessionExpiryInterval: 300 } }
  const { wire: s1 } = await Wire.connect(t, b.port, 5, { ...session, properties: { ...session.properties, receiveMaximum: 10 } })
  await s1.subscribe([{ topic: 'rmre', qos: 2 }], 1)
  const pub = await connectClient(t, b.url, { clientId: 'rm-re-pub', protocolVersion: 5 })
  for (let i = 0; i < 6; i++) await pub.publishAsync('rmre', `m${i}`, { qos: i === 1 ? 2 : 1 })
  await until(() => s1.publishes().length === 6, 5000, '6 unacknowledged messages')
  const first = s1.publishes()
  await s1.drop()

  const { wire: s2 } = await Wire.connect(t, b.port, 5, { ...session, properties: { ...session.properties, receiveMaximum: 2 } })
  await pub.publishAsync('rmre', 'sentinel-0', { qos: 0 })
  await s2.take('publish', (p) => p.payload.toString() === 'sentinel-0')
  const resent = () => s2.publishes().filter((p) => p.qos > 0)
  t.equal(resent().length, 2, 'only 2 resent while none is acknowledged')
  const acked = new Set<number>()
  await until(
    () => {
      for (const p of resent()) {
        const id = p.messageId ?? 0
        if (acked.has(id)) continue
        acked.add(id)
        if (p.qos === 1) s2.send({ cmd: 'puback', messageId: id })
        else s2.send({ cmd: 'pubrec', messageId: id })
      }
      for (const r of s2.all('pubrel')) s2.send({ cmd: 'pubcomp', messageId: r.messageId ?? 0 })
      return resent().length >= 6
    },
    5000,
    'all 6 resent as acknowledgements free the window',
  )
  t.same(
    resent().map((p) => [p.payload.toString(), p.messageId, p.dup]),
    first.map((p) => [p.payload.toString(), p.messageId, true]),
    'same order, same ids, DUP=1',
  )
})

t.test('v5: PUBACK or PUBREC with a failure reason code ends the flow; the message is not resent [MQTT-4.4.0-2] [MQTT-4.3.3-5]', async (t) => {
  const b = await startBroker(t)
  const session = { clientId: 'fail-ack-sub', clean: false, properties: { sessionExpiryInterval: 300, receiveMaximum: 2 } }
  const { wire: s1 } = await Wire.connect(t, b.port, 5, session)
  await s1.subscribe([{ topic: 'fa/#', qos: 2 }], 1)
  const pub = await connectClient(t, b.url, { clientId: 'fail-ack-pub', protocolVersion: 5 })
  await pub.publishAsync('fa/1', 'refused-1', { qos: 1 })
  await pub.publishAsync('fa/2', 'refused-2', { qos: 2 })
  await pub.publishAsync('fa/3', 'third', { qos: 1 })
  const p1 = await s1.take('publish', (p) => p.topic === 'fa/1')
  const p2 = await s1.take('publish', (p) => p.topic === 'fa/2')
  s1.send({ cmd: 'puback', messageId: p1.messageId ?? 0, reasonCode: 0x80 })
  s1.send({ cmd: 'pubrec', messageId: p2.messageId ?? 0, reasonCode: 0x80 })
  // Both slots of the window are free again: the third message follows.
  await s1.take('publish', (p) => p.topic === 'fa/3')
  t.equal(s1.all('pubrel').length, 0, 'no PUBREL after PUBREC 0x80')
  await s1.drop()
  const { wire: s2 } = await Wire.connect(t, b.port, 5, session)
  await pub.publishAsync('fa/sentinel', 's', { qos: 1 })
  await s2.take('publish', (p) => p.topic === 'fa/sentinel')
  t.same(
    s2.publishes().map((p) => p.topic),
    ['fa/3', 'fa/sentinel'],
    'only the unacknowledged third message is resent',
  )
  t.equal(s2.all('pubrel').length, 0)
})
