import type { Test } from 'tap'
import t from 'tap'
import { startBroker, type TestBroker } from '../helpers/broker.js'
import { collect, connectClient, connectWithAck, type Received, sleep, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'
import { frame, frames, handConnect, PACKET, rawPublish, readVarint, str, varint as varintBytes } from '../helpers/wire.js'

const V5 = { protocolVersion: 5 } as const

/** Reads a variable byte integer at `pos` of a PUBLISH body. */
function varint(buf: Buffer, pos: number): { value: number; next: number } {
  const v = readVarint(buf, pos)
  if (v === undefined) throw new Error(`bad variable byte integer at ${pos}`)
  return v
}

/** The User Property pairs of a v5 PUBLISH frame, in wire order. */
function userPropertiesInOrder(flags: number, body: Buffer): [string, string][] {
  let pos = 2 + body.readUInt16BE(0)
  if (((flags >> 1) & 3) > 0) pos += 2
  const len = varint(body, pos)
  const end = len.next + len.value
  pos = len.next
  const out: [string, string][] = []
  const readString = (): string => {
    const l = body.readUInt16BE(pos)
    const s = body.toString('utf8', pos + 2, pos + 2 + l)
    pos += 2 + l
    return s
  }
  while (pos < end) {
    const id = body[pos++]
    if (id === 0x01) pos += 1
    else if (id === 0x02) pos += 4
    else if (id === 0x23) pos += 2
    else if (id === 0x0b) pos = varint(body, pos).next
    else if (id === 0x03 || id === 0x08 || id === 0x09) readString()
    else if (id === 0x26) {
      const k = readString()
      out.push([k, readString()])
    } else throw new Error(`unexpected property ${id}`)
  }
  return out
}

const payloads = (got: Received[]): string[] => got.map((m) => m.payload.toString())

/**
 * A v5 session (expiry 300 s) subscribed to `filter` at QoS 1 and then left offline; returns
 * the options that resume it.
 */
async function offlineSession(t: Test, b: TestBroker, clientId: string, filter: string) {
  const session = { ...V5, clientId, clean: false, properties: { sessionExpiryInterval: 300 } }
  const client = await connectClient(t, b.url, session)
  await client.subscribeAsync(filter, { qos: 1 })
  await client.endAsync()
  return session
}

t.test('user properties reach v5 subscribers unaltered, with their order kept [MQTT-3.3.2-17] [MQTT-3.3.2-18]', async (t) => {
  const b = await startBroker(t)
  const sub = await connectClient(t, b.url, { ...V5, clientId: 'up-sub' })
  const got = collect(sub)
  await sub.subscribeAsync('up/#', { qos: 1 })
  const { wire: raw } = await Wire.connect(t, b.port, 5, { clientId: 'up-raw-sub' })
  await raw.subscribe([{ topic: 'up/#', qos: 0 }], 1)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'up-pub' })
  const userProperties = { z: 'last-letter', a: ['1', '2', '3'], 'k e y': 'välüe ✓', empty: '' }
  await pub.publishAsync('up/x', 'p', { qos: 1, properties: { userProperties } })
  await until(() => got.length === 1)
  const received = got[0]?.packet.properties?.userProperties
  t.same(received, userProperties, 'every pair, unaltered')
  t.same(Object.keys(received ?? {}), Object.keys(userProperties), 'keys in the published order')
  t.same(received?.a, ['1', '2', '3'], 'repeated keys keep their values in order')
  // On the wire, to a second subscriber, the pairs come in the order they were sent.
  await raw.take('publish', (p) => p.topic === 'up/x')
  const published = frames(raw.bytes()).find((f) => f.type === PACKET.PUBLISH)
  t.same(published === undefined ? [] : userPropertiesInOrder(published.flags, published.body), [
    ['z', 'last-letter'],
    ['a', '1'],
    ['a', '2'],
    ['a', '3'],
    ['k e y', 'välüe ✓'],
    ['empty', ''],
  ])
  // A 3.1.1 subscriber gets the message without properties.
  const v4 = await connectClient(t, b.url, { clientId: 'up-v4' })
  const got4 = collect(v4)
  await v4.subscribeAsync('up/#', { qos: 1 })
  await pub.publishAsync('up/y', 'q', { qos: 1, properties: { userProperties } })
  await until(() => got4.length === 1)
  t.equal(got4[0]?.payload.toString(), 'q')
})

t.test(
  'interleaved user properties (a, b, a) keep their wire order [MQTT-3.3.2-18]',
  async (t) => {
    const b = await startBroker(t)
    const { wire: raw } = await Wire.connect(t, b.port, 5, { clientId: 'upi-sub' })
    await raw.subscribe([{ topic: 'upi/#', qos: 0 }], 1)
    const { wire: pub } = await Wire.connect(t, b.port, 5, { clientId: 'upi-pub' })
    const user = (k: string, v: string) => Buffer.concat([Buffer.from([0x26]), str(k), str(v)])
    const props = Buffer.concat([user('a', '1'), user('b', '2'), user('a', '3')])
    pub.sendBytes(rawPublish('upi/x', 'p', { version: 5, qos: 1, id: 1, props }))
    await pub.take('puback', (p) => p.messageId === 1)
    await raw.take('publish', (p) => p.topic === 'upi/x')
    const published = frames(raw.bytes()).find((f) => f.type === PACKET.PUBLISH)
    const order = published === undefined ? [] : userPropertiesInOrder(published.flags, published.body)
    t.same(
      order.slice().sort(),
      [
        ['a', '1'],
        ['a', '3'],
        ['b', '2'],
      ],
      'every pair arrives',
    )
    t.same(
      order,
      [
        ['a', '1'],
        ['b', '2'],
        ['a', '3'],
      ],
      'in the order sent',
    )
  },
)

t.test('a will keeps the order of its interleaved user properties (a, b, a) [MQTT-3.1.3-10]', async (t) => {
  const b = await startBroker(t)
  const { wire: raw } = await Wire.connect(t, b.port, 5, { clientId: 'upw-sub' })
  await raw.subscribe([{ topic: 'upw/#', qos: 0 }], 1)
  const user = (k: string, v: string) => Buffer.concat([Buffer.from([0x26]), str(k), str(v)])
  const willProps = Buffer.concat([Buffer.from([0x18, 0, 0, 0, 0]), user('a', '1'), user('b', '2'), user('a', '3')])
  const tail = Buffer.concat([Buffer.from(varintBytes(willProps.length)), willProps, str('upw/will'), str('gone')])
  const dying = await Wire.open(t, b.port, 5)
  // Flags: clean start (0x02) and will (0x04), will QoS 0.
  dying.sendBytes(handConnect({ clientId: 'upw-dying', level: 5, flags: 0x06, tail }))
  await dying.take('connack', () => true)
  dying.socket.destroy()
  await raw.take('publish', (p) => p.topic === 'upw/will')
  const published = frames(raw.bytes()).find((f) => f.type === PACKET.PUBLISH)
  const order = published === undefined ? [] : userPropertiesInOrder(published.flags, published.body)
  t.same(
    order,
    [
      ['a', '1'],
      ['b', '2'],
      ['a', '3'],
    ],
    'the will is published with its user properties in the order they were sent',
  )
})

t.test('message expiry: an expired retained message is not sent to a new subscriber [MQTT-3.3.2-5]', async (t) => {
  const b = await startBroker(t)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'exp-pub' })
  await pub.publishAsync('exp/short', 'short', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } })
  await pub.publishAsync('exp/long', 'long', { qos: 1, retain: true, properties: { messageExpiryInterval: 100 } })
  await pub.publishAsync('exp/forever', 'forever', { qos: 1, retain: true })
  const early = await connectClient(t, b.url, { ...V5, clientId: 'exp-early' })
  const gotEarly = collect(early)
  await early.subscribeAsync('exp/#', { qos: 1 })
  await until(() => gotEarly.length === 3, 5000, 'all three retained before expiry')
  await sleep(2100)
  const late = await connectClient(t, b.url, { ...V5, clientId: 'exp-late' })
  const got = collect(late)
  await late.subscribeAsync('exp/#', { qos: 1 })
  await pub.publishAsync('exp/sentinel', 's', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'exp/sentinel'))
  t.same(got.map((m) => m.topic).sort(), ['exp/forever', 'exp/long', 'exp/sentinel'], 'the expired retained message is gone')
  const long = got.find((m) => m.topic === 'exp/long')
  const remaining = long?.packet.properties?.messageExpiryInterval ?? 0
  t.ok(remaining >= 1 && remaining <= 98, `retained expiry is what remains (${remaining}) [MQTT-3.3.2-6]`)
  t.equal(got.find((m) => m.topic === 'exp/forever')?.packet.properties?.messageExpiryInterval, undefined, 'no expiry, no property')
})

t.test('message expiry: a queued message for an offline session is dropped once expired, the other is forwarded with the remaining interval [MQTT-3.3.2-5] [MQTT-3.3.2-6]', async (t) => {
  const b = await startBroker(t)
  const session = await offlineSession(t, b, 'exp-off', 'off/#')
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'exp-off-pub' })
  await pub.publishAsync('off/a', 'expires', { qos: 1, properties: { messageExpiryInterval: 1 } })
  await pub.publishAsync('off/b', 'stays', { qos: 1, properties: { messageExpiryInterval: 100 } })
  await pub.publishAsync('off/c', 'no-expiry', { qos: 1 })
  await sleep(2100)
  const { client: s2, messages: got } = await connectWithAck(t, b.url, session)
  t.equal(s2.connected, true)
  await pub.publishAsync('off/sentinel', 's', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'off/sentinel'))
  t.same(payloads(got), ['stays', 'no-expiry', 's'])
  const remaining = got[0]?.packet.properties?.messageExpiryInterval ?? 0
  t.ok(remaining >= 1 && remaining <= 98, `forwarded expiry decremented by the time waited: ${remaining}`)
  t.equal(got[1]?.packet.properties?.messageExpiryInterval, undefined)
})

t.test('incoming topic aliases: topic+alias sets the mapping, alias alone uses it, a new topic remaps it [MQTT-3.3.2-12] (§3.3.2.3.4)', async (t) => {
  const b = await startBroker(t)
  const sub = await connectClient(t, b.url, { ...V5, clientId: 'ta-sub' })
  const got = collect(sub)
  await sub.subscribeAsync('ta/#', { qos: 1 })
  const { wire: p, connack } = await Wire.connect(t, b.port, 5, { clientId: 'ta-pub' })
  const max = connack.properties?.topicAliasMaximum ?? 0
  t.equal(max, 16, 'CONNACK announces Topic Alias Maximum')
  await p.publish({ topic: 'ta/one', payload: '1', qos: 1, messageId: 1, properties: { topicAlias: 1 } })
  await p.publish({ topic: '', payload: '2', qos: 1, messageId: 2, properties: { topicAlias: 1 } })
  await p.publish({ topic: 'ta/max', payload: '3', qos: 0, properties: { topicAlias: max } })
  await p.publish({ topic: '', payload: '4', qos: 2, messageId: 3, properties: { topicAlias: max } })
  await p.publish({ topic: 'ta/two', payload: '5', qos: 1, messageId: 4, properties: { topicAlias: 1 } })
  await p.publish({ topic: '', payload: '6', qos: 1, messageId: 5, properties: { topicAlias: 1 } })
  await p.publish({ topic: 'ta/sentinel', payload: 's', qos: 1, messageId: 6 })
  await until(() => got.some((m) => m.topic === 'ta/sentinel'))
  t.same(
    got.map((m) => [m.topic, m.payload.toString()]),
    [
      ['ta/one', '1'],
      ['ta/one', '2'],
      ['ta/max', '3'],
      ['ta/max', '4'],
      ['ta/two', '5'],
      ['ta/two', '6'],
      ['ta/sentinel', 's'],
    ],
    'delivered with the full topic name',
  )
  t.notOk(p.isClosed())
})

t.test('incoming topic alias errors: above the maximum or 0 gives DISCONNECT 0x94, an unknown alias gives 0x82, mappings do not survive a reconnect [MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.3.2-7]', async (t) => {
  const b = await startBroker(t, { limits: { topicAliasMaximum: 4 } })
  const sub = await connectClient(t, b.url, { ...V5, clientId: 'tae-sub' })
  const got = collect(sub)
  await sub.subscribeAsync('tae/#', { qos: 1 })
  const cases: { name: string; alias: number; topic: string; code: number; setup?: boolean }[] = [
    { name: 'alias above Topic Alias Maximum', alias: 5, topic: 'tae/above', code: 0x94 },
    { name: 'alias 0', alias: 0, topic: 'tae/zero', code: 0x94 },
    { name: 'unknown alias with empty topic', alias: 2, topic: '', code: 0x82 },
    { name: 'alias set on an earlier connection', alias: 1, topic: '', code: 0x82, setup: true },
  ]
  for (const c of cases) {
    if (c.setup === true) {
      const { wire: before } = await Wire.connect(t, b.port, 5, { clientId: 'tae-pub', clean: false, properties: { sessionExpiryInterval: 60 } })
      await before.publish({ topic: 'tae/set', payload: 'set', qos: 1, messageId: 1, properties: { topicAlias: 1 } })
      await before.disconnect()
    }
    const { wire: p, connack } = await Wire.connect(t, b.port, 5, { clientId: 'tae-pub', clean: false, properties: { sessionExpiryInterval: 60 } })
    t.equal(connack.properties?.topicAliasMaximum, 4)
    p.send({ cmd: 'publish', topic: c.topic, payload: c.name, qos: 1, messageId: 1, dup: false, retain: false, properties: { topicAlias: c.alias } })
    const d = await p.take('disconnect')
    t.equal(d.reasonCode, c.code, `${c.name}: DISCONNECT 0x${c.code.toString(16)}`)
    await p.closed
    t.equal(p.all('puback').length, 0, `${c.name}: not acknowledged`)
  }
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'tae-ok' })
  await pub.publishAsync('tae/sentinel', 's', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'tae/sentinel'))
  t.same(
    got.map((m) => m.topic),
    ['tae/set', 'tae/sentinel'],
    'none of the refused messages was delivered',
  )
})

t.test('outgoing topic aliases: the broker aliases topics up to the client Topic Alias Maximum, second message has an empty topic [MQTT-3.3.2-11] (§3.3.2.3.4)', async (t) => {
  const b = await startBroker(t)
  const { wire: raw } = await Wire.connect(t, b.port, 5, { clientId: 'oa-raw', properties: { topicAliasMaximum: 2 } })
  await raw.subscribe([{ topic: 'oa/#', qos: 1 }], 1)
  const mq = await connectClient(t, b.url, { ...V5, clientId: 'oa-mqttjs', properties: { topicAliasMaximum: 5 } })
  const gotMq = collect(mq)
  await mq.subscribeAsync('oa/#', { qos: 1 })
  const none = await connectClient(t, b.url, { ...V5, clientId: 'oa-none' })
  const gotNone = collect(none)
  await none.subscribeAsync('oa/#', { qos: 1 })
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'oa-pub' })
  const sequence = ['oa/a', 'oa/a', 'oa/b', 'oa/a', 'oa/b', 'oa/c', 'oa/c', 'oa/a']
  for (const [i, topic] of sequence.entries()) await pub.publishAsync(topic, String(i), { qos: 1 })
  await until(() => raw.publishes().length === sequence.length, 5000, 'raw subscriber got all')
  for (const p of raw.publishes()) raw.send({ cmd: 'puback', messageId: p.messageId ?? 0 })
  const wire = raw.publishes().map((p) => [p.topic, p.properties?.topicAlias, p.payload.toString()])
  t.same(
    wire,
    [
      ['oa/a', 1, '0'],
      ['', 1, '1'],
      ['oa/b', 2, '2'],
      ['', 1, '3'],
      ['', 2, '4'],
      ['oa/c', undefined, '5'], // both aliases taken: full topic, no alias
      ['oa/c', undefined, '6'],
      ['', 1, '7'],
    ],
    'aliases 1..2 only, an empty topic only for an alias already sent on this connection',
  )
  await until(() => gotMq.length === sequence.length && gotNone.length === sequence.length)
  t.same(
    gotMq.map((m) => m.topic),
    sequence,
    'MQTT.js resolves every alias to the full topic',
  )
  t.same(
    gotMq.map((m) => m.packet.properties?.topicAlias),
    [1, 1, 2, 1, 2, 3, 3, 1],
    'MQTT.js sees the alias property',
  )
  t.ok(
    gotNone.every((m) => m.packet.properties?.topicAlias === undefined),
    'no alias for a client that allows none (Topic Alias Maximum absent = 0)',
  )
  // A new connection starts without mappings [MQTT-3.3.2-7]: the first message carries the topic again.
  await raw.disconnect()
  const { wire: raw2 } = await Wire.connect(t, b.port, 5, { clientId: 'oa-raw', properties: { topicAliasMaximum: 2 } })
  await raw2.subscribe([{ topic: 'oa/#', qos: 0 }], 1)
  await pub.publishAsync('oa/a', 'again', { qos: 0 })
  const again = await raw2.take('publish')
  t.same([again.topic, again.properties?.topicAlias], ['oa/a', 1])
})

t.test('shared subscription $share/g/t/#: 3 members split 30 messages, a plain subscriber gets all, members get no retained message (§4.8.2) [MQTT-4.8.2-3]', async (t) => {
  const b = await startBroker(t)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'sh-pub' })
  await pub.publishAsync('t/retained', 'r', { qos: 1, retain: true })
  const members: Received[][] = []
  for (let i = 0; i < 3; i++) {
    const c = await connectClient(t, b.url, { ...V5, clientId: `sh-member-${i}` })
    members.push(collect(c))
    const granted = await c.subscribeAsync('$share/g/t/#', { qos: 1 })
    t.equal(granted[0]?.qos, 1)
  }
  const plain = await connectClient(t, b.url, { ...V5, clientId: 'sh-plain' })
  const all = collect(plain)
  await plain.subscribeAsync('t/#', { qos: 1 })
  await until(() => all.length === 1, 5000, 'retained message for the plain subscriber')
  t.equal(all[0]?.topic, 't/retained')
  t.equal(all[0]?.packet.retain, true)
  const expected: string[] = []
  for (let i = 0; i < 30; i++) {
    expected.push(`m${i}`)
    await pub.publishAsync('t/x', `m${i}`, { qos: 1 })
  }
  await until(() => all.length === 31, 5000, 'all 30 for the plain subscriber')
  await until(() => members.reduce((n, m) => n + m.length, 0) >= 30, 5000, '30 messages across the group')
  // A last message through each member's path: the group sees it once more, no more than that.
  await pub.publishAsync('t/x', 'sentinel', { qos: 1 })
  await until(() => members.some((m) => m.some((r) => r.payload.toString() === 'sentinel')))
  await until(() => all.length === 32, 5000, 'the sentinel for the plain subscriber')
  t.same(payloads(all.slice(1)), [...expected, 'sentinel'], 'the plain subscriber gets every message, in order')
  const shared = members.flat().filter((m) => m.payload.toString() !== 'sentinel')
  t.equal(shared.length, 30, 'exactly 30 across the group')
  t.same(payloads(shared).sort(), [...expected].sort(), 'each message once, none missing, no duplicates')
  members.forEach((m, i) => {
    t.ok(m.length > 0, `member ${i} got ${m.length}`)
    t.ok(
      m.every((r) => r.topic === 't/x' && !r.packet.retain),
      `member ${i} got no retained message`,
    )
  })
})

t.test('shared subscription with No Local is a Protocol Error: DISCONNECT 0x82 [MQTT-3.8.3-4]', async (t) => {
  const b = await startBroker(t)
  const { wire } = await Wire.connect(t, b.port, 5, { clientId: 'sh-nl' })
  wire.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/nl', qos: 0, nl: true }] })
  const d = await wire.take('disconnect')
  t.equal(d.reasonCode, 0x82)
  await wire.closed
})

t.test('No Local: a client does not get its own messages through that subscription, but does through another [MQTT-3.8.3-3]', async (t) => {
  const b = await startBroker(t)
  const a = await connectClient(t, b.url, { ...V5, clientId: 'nl-a' })
  const gotA = collect(a)
  await a.subscribeAsync('nl/#', { qos: 1, nl: true })
  await a.subscribeAsync('nl2/+', { qos: 1, nl: false })
  await a.subscribeAsync('nl2/#', { qos: 1, nl: true })
  const other = await connectClient(t, b.url, { ...V5, clientId: 'nl-b' })
  await a.publishAsync('nl/own', 'own', { qos: 1 })
  await a.publishAsync('nl2/own', 'own-via-plain', { qos: 1 })
  await other.publishAsync('nl/other', 'other', { qos: 1 })
  await until(() => gotA.some((m) => m.topic === 'nl/other'))
  t.same(
    gotA.map((m) => [m.topic, m.payload.toString()]),
    [
      ['nl2/own', 'own-via-plain'],
      ['nl/other', 'other'],
    ],
  )
})

t.test('Retain As Published: RETAIN kept for RAP=1 subscribers, cleared for RAP=0 [MQTT-3.3.1-12] [MQTT-3.3.1-13]', async (t) => {
  const b = await startBroker(t)
  const rap = await connectClient(t, b.url, { ...V5, clientId: 'rap-1' })
  const gotRap = collect(rap)
  await rap.subscribeAsync('rap/#', { qos: 1, rap: true })
  const norap = await connectClient(t, b.url, { ...V5, clientId: 'rap-0' })
  const gotNo = collect(norap)
  await norap.subscribeAsync('rap/#', { qos: 1, rap: false })
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'rap-pub' })
  await pub.publishAsync('rap/x', 'retained', { qos: 1, retain: true })
  await pub.publishAsync('rap/x', 'plain', { qos: 1, retain: false })
  await until(() => gotRap.length === 2 && gotNo.length === 2)
  t.same(
    gotRap.map((m) => [m.payload.toString(), m.packet.retain]),
    [
      ['retained', true],
      ['plain', false],
    ],
  )
  t.same(
    gotNo.map((m) => [m.payload.toString(), m.packet.retain]),
    [
      ['retained', false],
      ['plain', false],
    ],
  )
})

t.test('Retain Handling 0 sends retained on every subscribe, 1 only for a new subscription, 2 never [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.8.4-3]', async (t) => {
  const b = await startBroker(t)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'rh-pub' })
  await pub.publishAsync('rh/x', 'kept', { qos: 1, retain: true })
  let n = 0
  for (const [rh, expected] of [
    [0, 2],
    [1, 1],
    [2, 0],
  ] as const) {
    const c = await connectClient(t, b.url, { ...V5, clientId: `rh-${rh}` })
    const got = collect(c)
    await c.subscribeAsync('rh/#', { qos: 1, rh })
    await c.subscribeAsync('rh/#', { qos: 1, rh }) // the same filter again: no longer new
    await pub.publishAsync('rh/sentinel', String(n), { qos: 1 })
    await until(() => got.some((m) => m.topic === 'rh/sentinel' && m.payload.toString() === String(n)))
    n++
    const retained = got.filter((m) => m.topic === 'rh/x')
    t.equal(retained.length, expected, `rh=${rh}: ${expected} retained deliveries for two SUBSCRIBEs`)
    t.ok(
      retained.every((m) => m.packet.retain),
      `rh=${rh}: sent with RETAIN=1`,
    )
  }
})

t.test('subscription identifiers: overlapping subscriptions with ids 1 and 2 give one PUBLISH carrying both [MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]', async (t) => {
  const b = await startBroker(t)
  const { wire } = await Wire.connect(t, b.port, 5, { clientId: 'sid-raw' })
  await wire.subscribe([{ topic: 'sid/#', qos: 1 }], 1, { subscriptionIdentifier: 1 })
  await wire.subscribe([{ topic: 'sid/+', qos: 1 }], 2, { subscriptionIdentifier: 2 })
  await wire.subscribe([{ topic: 'sid/none', qos: 1 }], 3)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'sid-pub' })
  await pub.publishAsync('sid/a', 'both', { qos: 1 })
  await pub.publishAsync('sid/a/b', 'one', { qos: 1 })
  await pub.publishAsync('sid/none', 'with-none', { qos: 1 })
  await pub.publishAsync('sid/x/sentinel', 's', { qos: 1 })
  await wire.take('publish', (p) => p.topic === 'sid/x/sentinel')
  const got = wire.publishes()
  const idsOf = (topic: string) => {
    const v = got.find((p) => p.topic === topic)?.properties?.subscriptionIdentifier
    return v === undefined ? [] : (Array.isArray(v) ? v : [v]).slice().sort()
  }
  t.equal(got.filter((p) => p.topic === 'sid/a').length, 1, 'one PUBLISH for two matching subscriptions')
  t.same(idsOf('sid/a'), [1, 2], 'carrying both identifiers')
  t.same(idsOf('sid/a/b'), [1])
  t.same(idsOf('sid/none'), [1, 2], 'sid/none matches sid/# (1), sid/+ (2) and sid/none (no id)')
  // MQTT.js: the identifier of the matching subscription, also on retained messages.
  await pub.publishAsync('sid2/r', 'retained', { qos: 1, retain: true })
  const mq = await connectClient(t, b.url, { ...V5, clientId: 'sid-mqttjs' })
  const gotMq = collect(mq)
  await mq.subscribeAsync('sid2/#', { qos: 1, properties: { subscriptionIdentifier: 268_435_455 } })
  await until(() => gotMq.length === 1)
  t.equal(gotMq[0]?.packet.properties?.subscriptionIdentifier, 268_435_455, 'the largest identifier, on a retained message')
})

t.test('a client PUBLISH with a Subscription Identifier, or SUBSCRIBE with identifier 0, is a Protocol Error [MQTT-3.3.4-6] (§3.8.2.1.2)', async (t) => {
  const b = await startBroker(t)
  const { wire: p } = await Wire.connect(t, b.port, 5, { clientId: 'sid-bad-pub' })
  p.send({ cmd: 'publish', topic: 'x', payload: 'x', qos: 0, dup: false, retain: false, properties: { subscriptionIdentifier: 3 } })
  t.equal((await p.take('disconnect')).reasonCode, 0x82)
  const { wire: s } = await Wire.connect(t, b.port, 5, { clientId: 'sid-bad-sub' })
  // mqtt-packet refuses to encode identifier 0, so the SUBSCRIBE is written by hand.
  s.sendBytes(frame(0x82, Buffer.concat([Buffer.from([0, 1, 2, 0x0b, 0]), str('x/#'), Buffer.from([0])])))
  const d = await s.take('disconnect')
  t.equal(d.reasonCode, 0x82)
})

t.test('request/response: Response Topic, Correlation Data, Content Type and Payload Format Indicator pass through unaltered [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20] [MQTT-3.3.2-4]', async (t) => {
  const b = await startBroker(t)
  const responder = await connectClient(t, b.url, { ...V5, clientId: 'rr-responder' })
  await responder.subscribeAsync('service/echo', { qos: 1 })
  responder.on('message', (_topic, payload, packet) => {
    const props = packet.properties
    if (props?.responseTopic === undefined) return
    const reply: { correlationData?: Buffer; contentType: string } = { contentType: 'text/plain' }
    if (props.correlationData !== undefined) reply.correlationData = props.correlationData
    responder.publish(props.responseTopic, `echo:${payload.toString()}`, { qos: 1, properties: reply })
  })
  const requester = await connectClient(t, b.url, { ...V5, clientId: 'rr-requester' })
  const got = collect(requester)
  await requester.subscribeAsync('reply/rr-requester', { qos: 1 })
  const seenByResponder: Received[] = []
  responder.on('message', (topic, payload, packet) => seenByResponder.push({ topic, payload, packet }))
  const correlation = Buffer.from([0, 1, 2, 0xff, 0xfe])
  await requester.publishAsync('service/echo', 'ping', {
    qos: 1,
    properties: { responseTopic: 'reply/rr-requester', correlationData: correlation, contentType: 'application/x-ping; v=1', payloadFormatIndicator: true },
  })
  await until(() => got.length === 1, 5000, 'the response')
  const req = seenByResponder[0]?.packet.properties
  t.equal(req?.responseTopic, 'reply/rr-requester')
  t.same(req?.correlationData, correlation)
  t.equal(req?.contentType, 'application/x-ping; v=1')
  t.equal(req?.payloadFormatIndicator, true)
  const res = got[0]
  t.equal(res?.topic, 'reply/rr-requester')
  t.equal(res?.payload.toString(), 'echo:ping')
  t.same(res?.packet.properties?.correlationData, correlation, 'correlation data returned unaltered')
  t.equal(res?.packet.properties?.contentType, 'text/plain')
})

t.test('Maximum Packet Size from the client: a larger PUBLISH is discarded as if sent, a later small one arrives [MQTT-3.1.2-24] [MQTT-3.1.2-25]', async (t) => {
  const b = await startBroker(t)
  // Receive Maximum 1: the discarded QoS 1 message must also free its slot in the window.
  const sub = await connectClient(t, b.url, { ...V5, clientId: 'mps-sub', properties: { maximumPacketSize: 100, receiveMaximum: 1 } })
  const got = collect(sub)
  await sub.subscribeAsync('mps/#', { qos: 1 })
  const { wire: raw } = await Wire.connect(t, b.port, 5, { clientId: 'mps-raw', properties: { maximumPacketSize: 100 } })
  await raw.subscribe([{ topic: 'mps/#', qos: 1 }], 1)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'mps-pub' })
  await pub.publishAsync('mps/big', Buffer.alloc(500, 0x61), { qos: 1 })
  await pub.publishAsync('mps/big0', Buffer.alloc(500, 0x62), { qos: 0 })
  await pub.publishAsync('mps/small', 'small', { qos: 1 })
  await until(() => got.length >= 1)
  await raw.take('publish', (p) => p.topic === 'mps/small')
  t.same(payloads(got), ['small'])
  t.same(
    raw.publishes().map((p) => p.topic),
    ['mps/small'],
  )
  t.ok(
    frames(raw.bytes()).every((f) => f.body.length + 2 <= 100),
    'no packet over 100 bytes reached the client',
  )
  t.notOk(sub.disconnected, 'the subscriber is still connected')
})

t.test('Maximum Packet Size with topic aliases: an alias is only used after its topic reached the client [MQTT-3.1.2-25] [MQTT-3.3.2-11]', async (t) => {
  const b = await startBroker(t)
  const { wire: raw } = await Wire.connect(t, b.port, 5, { clientId: 'mpsa-raw', properties: { maximumPacketSize: 100, topicAliasMaximum: 5 } })
  await raw.subscribe([{ topic: 'mpsa/#', qos: 0 }], 1)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'mpsa-pub' })
  await pub.publishAsync('mpsa/t', Buffer.alloc(300, 0x61), { qos: 0 })
  await pub.publishAsync('mpsa/t', 'small-1', { qos: 0 })
  await pub.publishAsync('mpsa/t', 'small-2', { qos: 0 })
  await until(() => raw.publishes().length === 2, 5000, 'two small messages')
  const known = new Map<number, string>()
  for (const p of raw.publishes()) {
    const alias = p.properties?.topicAlias
    if (alias === undefined) {
      t.equal(p.topic, 'mpsa/t')
      continue
    }
    if (p.topic !== '') known.set(alias, p.topic)
    t.equal(known.get(alias), 'mpsa/t', `alias ${alias} resolves to a topic this client was sent (topic "${p.topic}")`)
  }
})

t.test('assigned client identifier for an empty client id; the assigned id resumes the session [MQTT-3.2.2-16] [MQTT-3.1.3-6]', async (t) => {
  const b = await startBroker(t)
  // Clean Start 1 with a Session Expiry: a new session that outlives this connection.
  const { wire: w1, connack } = await Wire.connect(t, b.port, 5, { clientId: '', clean: true, properties: { sessionExpiryInterval: 300 } })
  const assigned = connack.properties?.assignedClientIdentifier ?? ''
  t.ok(assigned.length > 0, `assigned ${assigned}`)
  t.equal(connack.sessionPresent, false)
  await w1.subscribe([{ topic: 'aci/#', qos: 1 }], 1)
  await w1.disconnect()
  const { connack: other } = await Wire.connect(t, b.port, 5, { clientId: '' })
  t.not(other.properties?.assignedClientIdentifier, assigned, 'each empty client id gets its own identifier')
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'aci-pub' })
  await pub.publishAsync('aci/x', 'while-away', { qos: 1 })
  const { wire: w2, connack: again } = await Wire.connect(t, b.port, 5, { clientId: assigned, clean: false, properties: { sessionExpiryInterval: 300 } })
  t.equal(again.sessionPresent, true, 'the session is found under the assigned id')
  t.equal(again.properties?.assignedClientIdentifier, undefined, 'no assignment for a given id')
  const m = await w2.take('publish')
  t.equal(m.payload.toString(), 'while-away')
  const { connack: v4 } = await Wire.connect(t, b.port, 4, { clientId: '' })
  t.equal(v4.returnCode, 0, '3.1.1 accepts an empty client id with clean session')
})

t.test('Payload Format Indicator 1 with invalid UTF-8: PUBACK/PUBREC 0x99 and not delivered; valid UTF-8 is delivered (§3.3.2.3.2) [MQTT-3.3.2-4]', async (t) => {
  const b = await startBroker(t)
  const sub = await connectClient(t, b.url, { ...V5, clientId: 'pfi-sub' })
  const got = collect(sub)
  await sub.subscribeAsync('pfi/#', { qos: 1 })
  const { wire: p } = await Wire.connect(t, b.port, 5, { clientId: 'pfi-pub' })
  const bad = Buffer.from([0x61, 0xff, 0xfe, 0x62])
  p.send({ cmd: 'publish', topic: 'pfi/bad1', payload: bad, qos: 1, messageId: 1, dup: false, retain: false, properties: { payloadFormatIndicator: true } })
  t.equal((await p.take('puback', (r) => r.messageId === 1)).reasonCode, 0x99, 'PUBACK 0x99 Payload format invalid')
  p.send({ cmd: 'publish', topic: 'pfi/bad2', payload: bad, qos: 2, messageId: 2, dup: false, retain: true, properties: { payloadFormatIndicator: true } })
  t.equal((await p.take('pubrec', (r) => r.messageId === 2)).reasonCode, 0x99, 'PUBREC 0x99')
  p.send({ cmd: 'publish', topic: 'pfi/bad0', payload: bad, qos: 0, dup: false, retain: false, properties: { payloadFormatIndicator: true } })
  await p.publish({ topic: 'pfi/binary', payload: bad, qos: 1, messageId: 3, properties: { payloadFormatIndicator: false } })
  await p.publish({ topic: 'pfi/good', payload: 'grüße', qos: 1, messageId: 4, properties: { payloadFormatIndicator: true } })
  await until(() => got.some((m) => m.topic === 'pfi/good'))
  t.same(
    got.map((m) => m.topic),
    ['pfi/binary', 'pfi/good'],
    'invalid payloads are not forwarded',
  )
  t.equal(got[1]?.packet.properties?.payloadFormatIndicator, true, 'indicator forwarded')
  t.equal(got[1]?.payload.toString(), 'grüße')
  t.equal(b.app.broker.router.retained.size, 0, 'the invalid retained message was not stored')
  t.notOk(p.isClosed())
})

t.test('message expiry: a message waiting for the client’s Receive Maximum window expires there [MQTT-3.3.2-5]', async (t) => {
  const b = await startBroker(t)
  const { wire: sub } = await Wire.connect(t, b.port, 5, { clientId: 'exp-win', properties: { receiveMaximum: 1 } })
  await sub.subscribe([{ topic: 'win/#', qos: 1 }], 1)
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'exp-win-pub' })
  await pub.publishAsync('win/1', 'holds-the-window', { qos: 1 })
  await pub.publishAsync('win/2', 'expires-waiting', { qos: 1, properties: { messageExpiryInterval: 1 } })
  await pub.publishAsync('win/3', 'waits', { qos: 1, properties: { messageExpiryInterval: 100 } })
  const first = await sub.take('publish')
  await sleep(2100)
  sub.send({ cmd: 'puback', messageId: first.messageId ?? 0 })
  const next = await sub.take('publish')
  sub.send({ cmd: 'puback', messageId: next.messageId ?? 0 })
  await pub.publishAsync('win/sentinel', 's', { qos: 1 })
  await sub.take('publish', (p) => p.topic === 'win/sentinel')
  t.same(
    sub.publishes().map((p) => p.payload.toString()),
    ['holds-the-window', 'waits', 's'],
  )
  const remaining = next.properties?.messageExpiryInterval ?? 0
  t.ok(remaining >= 1 && remaining <= 98, `remaining expiry ${remaining}`)
})

t.test('message expiry 0 is treated as no expiry, as Mosquitto does: retained and queued messages stay [MQTT-3.3.2-5] (§3.3.2.3.3)', async (t) => {
  const b = await startBroker(t)
  const session = await offlineSession(t, b, 'exp0-off', 'exp0/#')
  const live = await connectClient(t, b.url, { ...V5, clientId: 'exp0-live' })
  const gotLive = collect(live)
  await live.subscribeAsync('exp0/#', { qos: 1 })
  const pub = await connectClient(t, b.url, { ...V5, clientId: 'exp0-pub' })
  await pub.publishAsync('exp0/r', 'zero', { qos: 1, retain: true, properties: { messageExpiryInterval: 0 } })
  await until(() => gotLive.length === 1)
  await sleep(1100)
  const late = await connectClient(t, b.url, { ...V5, clientId: 'exp0-late' })
  const got = collect(late)
  await late.subscribeAsync('exp0/#', { qos: 1 })
  await until(() => got.length === 1, 5000, 'the retained message')
  t.equal(got[0]?.payload.toString(), 'zero')
  const { messages: queued } = await connectWithAck(t, b.url, session)
  await until(() => queued.length === 1, 5000, 'the queued message')
  t.equal(queued[0]?.payload.toString(), 'zero')
  t.equal(gotLive[0]?.packet.properties?.messageExpiryInterval, undefined, 'forwarded without an expiry, as Mosquitto does')
})
