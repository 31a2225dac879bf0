import type { MqttClient } from 'mqtt'
import t from 'tap'
import { startBroker, type TestBroker } from '../helpers/broker.js'
import { mosquitto, mosquittoPub } from '../helpers/cli.js'
import { collect, connectClient, type Received, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const SENTINEL = 'zz/sentinel'

/** A v5 MQTT.js subscriber on `filter` plus the sentinel topic. */
async function subscriber(t: Teardown, b: TestBroker, clientId: string, filter: string, version: 4 | 5 = 5) {
  const client = await connectClient(t, b.url, { protocolVersion: version, clientId })
  const got = collect(client)
  await client.subscribeAsync({ [filter]: { qos: 1 }, [SENTINEL]: { qos: 1 } })
  return { client, got, filter }
}

const seen = (got: Received[]): string[] => got.filter((m) => m.topic !== SENTINEL).map((m) => m.topic)
const hasSentinel = (got: Received[], payload = 's'): boolean => got.some((m) => m.topic === SENTINEL && m.payload.toString() === payload)

t.test('wildcards: + matches exactly one (possibly empty) level, # the parent and any number of levels, sport/# matches sport [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-4]', async (t) => {
  const b = await startBroker(t)
  const topics = [
    'sport',
    'sport/',
    'sport/tennis',
    'sport/tennis/player1',
    'sport/tennis/player1/ranking',
    'Sport/tennis',
    '/finance',
    'finance',
    'a//c',
    'a/b/c',
    'a/b/c/d',
    'a/c',
  ]
  const cases: [string, string[]][] = [
    ['sport/#', ['sport', 'sport/', 'sport/tennis', 'sport/tennis/player1', 'sport/tennis/player1/ranking']],
    ['sport/tennis/+', ['sport/tennis/player1']],
    ['sport/+', ['sport/', 'sport/tennis']],
    ['+', ['sport', 'finance']],
    ['+/+', ['sport/', 'sport/tennis', 'Sport/tennis', '/finance', 'a/c']],
    ['/+', ['/finance']],
    ['a/+/c', ['a//c', 'a/b/c']],
    ['+/tennis/#', ['sport/tennis', 'sport/tennis/player1', 'sport/tennis/player1/ranking', 'Sport/tennis']],
    ['#', topics],
    ['sport/tennis/player1', ['sport/tennis/player1']],
  ]
  const subs = []
  for (const [i, [filter]] of cases.entries()) subs.push(await subscriber(t, b, `wc-${i}`, filter))
  const pub = await connectClient(t, b.url, { clientId: 'wc-pub' })
  for (const topic of topics) await pub.publishAsync(topic, topic, { qos: 1 })
  await pub.publishAsync(SENTINEL, 's', { qos: 1 })
  for (const [i, [filter, expected]] of cases.entries()) {
    const s = subs[i]
    if (s === undefined) continue
    await until(() => hasSentinel(s.got), 5000, `sentinel for ${filter}`)
    t.same(seen(s.got).sort(), [...expected].sort(), `filter ${filter}`)
  }
})

t.test('topics starting with $ are not matched by a leading # or + but by an explicit $ filter [MQTT-4.7.2-1]', async (t) => {
  const b = await startBroker(t)
  const hash = await subscriber(t, b, 'd-hash', '#')
  const plus = await subscriber(t, b, 'd-plus', '+/x')
  const plusPlus = await subscriber(t, b, 'd-plusplus', '+/+')
  const dollar = await subscriber(t, b, 'd-dollar', '$test/#')
  const dollarPlus = await subscriber(t, b, 'd-dollar-plus', '$test/+')
  const pub = await connectClient(t, b.url, { clientId: 'd-pub', protocolVersion: 5 })
  await pub.publishAsync('$test/x', 'dollar', { qos: 1 })
  await pub.publishAsync('x/x', 'plain', { qos: 1 })
  await pub.publishAsync(SENTINEL, 's', { qos: 1 })
  for (const s of [hash, plus, plusPlus, dollar, dollarPlus]) await until(() => hasSentinel(s.got), 5000, `sentinel for ${s.filter}`)
  t.same(seen(hash.got), ['x/x'], '# does not match $test/x')
  t.same(seen(plus.got), ['x/x'], '+/x does not match $test/x')
  t.same(seen(plusPlus.got), ['x/x'], '+/+ does not match $test/x')
  t.same(seen(dollar.got), ['$test/x'], '$test/# matches $test/x')
  t.same(seen(dollarPlus.got), ['$test/x'], '$test/+ matches $test/x')
})

t.test('retained $SYS topics are not sent to # or +/... subscribers, only to $SYS/# [MQTT-4.7.2-1]', async (t) => {
  const b = await startBroker(t, { sys: { interval: 3600 } })
  const pub = await connectClient(t, b.url, { clientId: 'sys-pub' })
  await pub.publishAsync('x/broker/version', 'not-sys', { qos: 1, retain: true })
  const hash = await subscriber(t, b, 'sys-hash', '#')
  const plus = await subscriber(t, b, 'sys-plus', '+/broker/version')
  const sys = await subscriber(t, b, 'sys-sys', '$SYS/#')
  await pub.publishAsync(SENTINEL, 's', { qos: 1 })
  for (const s of [hash, plus, sys]) await until(() => hasSentinel(s.got), 5000, `sentinel for ${s.filter}`)
  t.same(seen(hash.got), ['x/broker/version'], '# gets the retained non-$ topic only')
  t.same(seen(plus.got), ['x/broker/version'], '+/broker/version gets the retained non-$ topic only')
  const sysTopics = seen(sys.got)
  t.ok(sysTopics.includes('$SYS/broker/version'), '$SYS/# gets $SYS/broker/version')
  t.ok(
    sysTopics.every((topic) => topic.startsWith('$SYS/')),
    '$SYS/# gets only $SYS topics',
  )
})

t.test('v5: overlapping subscriptions of one client deliver one copy at the maximum QoS [MQTT-3.3.4-2]', async (t) => {
  const b = await startBroker(t)
  const c = await connectClient(t, b.url, { clientId: 'ov-sub', protocolVersion: 5 })
  const got = collect(c)
  await c.subscribeAsync('ov/#', { qos: 0 })
  await c.subscribeAsync('ov/+', { qos: 2 })
  await c.subscribeAsync('ov/a', { qos: 1 })
  const pub = await connectClient(t, b.url, { clientId: 'ov-pub', protocolVersion: 5 })
  await pub.publishAsync('ov/a', 'a', { qos: 2 }) // matches all three: QoS 2
  await pub.publishAsync('ov/b', 'b', { qos: 1 }) // ov/# (0) and ov/+ (2): QoS 1
  await pub.publishAsync('ov/c/d', 'cd', { qos: 2 }) // only ov/# (0): QoS 0
  await pub.publishAsync('ov/sentinel', 's', { qos: 2 })
  // The sentinel goes out at QoS 2 too, so MQTT.js (which emits QoS 2 at PUBREL) has emitted all before it.
  await until(() => got.some((m) => m.topic === 'ov/sentinel'))
  t.same(
    got.map((m) => [m.topic, m.packet.qos]).sort(),
    [
      ['ov/a', 2],
      ['ov/b', 1],
      ['ov/c/d', 0],
      ['ov/sentinel', 2],
    ],
  )
})

t.test('3.1.1: overlapping subscriptions deliver the message at the maximum QoS of the matches [MQTT-3.3.5-1]', async (t) => {
  const b = await startBroker(t)
  const c = await connectClient(t, b.url, { clientId: 'ov4-sub', protocolVersion: 4 })
  const got = collect(c)
  await c.subscribeAsync({ 'ov/#': { qos: 0 }, 'ov/+': { qos: 1 } })
  const pub = await connectClient(t, b.url, { clientId: 'ov4-pub' })
  await pub.publishAsync('ov/a', 'a', { qos: 2 })
  await pub.publishAsync('ov/x/sentinel', 's', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'ov/x/sentinel'))
  const copies = got.filter((m) => m.topic === 'ov/a')
  t.ok(
    copies.some((m) => m.packet.qos === 1),
    'a copy at QoS 1',
  )
  t.equal(copies.length, 1, 'perch sends one copy')
})

t.test('retained: set, replace, non-retained publish keeps it, empty payload clears; sent on subscribe with RETAIN=1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7] [MQTT-3.3.1-8] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.3.1-12]', async (t) => {
  const b = await startBroker(t)
  const pub = await connectClient(t, b.url, { clientId: 'ret-pub' })
  let n = 0
  /** A fresh subscriber to ret/#: the retained messages it got, once a live sentinel arrives. */
  const fresh = async (version: 4 | 5): Promise<Received[]> => {
    const c = await connectClient(t, b.url, { clientId: `ret-sub-${n++}`, protocolVersion: version })
    const got = collect(c)
    // QoS 1: MQTT.js emits a QoS 2 message only at PUBREL, which could trail the sentinel.
    await c.subscribeAsync('ret/#', { qos: 1 })
    await pub.publishAsync('ret/live-sentinel', 's', { qos: 1 })
    await until(() => got.some((m) => m.topic === 'ret/live-sentinel'))
    const sentinel = got.find((m) => m.topic === 'ret/live-sentinel')
    t.equal(sentinel?.packet.retain, false, 'a live message to an existing subscriber has RETAIN=0')
    c.end(true)
    return got.filter((m) => m.topic !== 'ret/live-sentinel')
  }

  await pub.publishAsync('ret/a', 'v1', { qos: 1, retain: true })
  for (const version of [4, 5] as const) {
    const got = await fresh(version)
    t.same(
      got.map((m) => [m.topic, m.payload.toString(), m.packet.retain, m.packet.qos]),
      [['ret/a', 'v1', true, 1]],
      `v${version}: stored, sent on subscribe with RETAIN=1 at min(QoS)`,
    )
  }

  await pub.publishAsync('ret/a', 'v2', { qos: 2, retain: true })
  t.same(
    (await fresh(5)).map((m) => m.payload.toString()),
    ['v2'],
    'a new retained message replaces the old one',
  )

  await pub.publishAsync('ret/a', 'v3-not-retained', { qos: 1, retain: false })
  t.same(
    (await fresh(4)).map((m) => m.payload.toString()),
    ['v2'],
    'a PUBLISH with RETAIN=0 neither stores nor replaces',
  )

  // An existing subscriber sees the clearing message as a normal (empty) message.
  const watcher = await connectClient(t, b.url, { clientId: 'ret-watcher', protocolVersion: 5 })
  const watched = collect(watcher)
  await watcher.subscribeAsync('ret/a', { qos: 1 })
  await until(() => watched.length === 1, 5000, 'retained v2 for the watcher')
  await pub.publishAsync('ret/a', '', { qos: 1, retain: true })
  await until(() => watched.length === 2, 5000, 'the clearing message')
  t.equal(watched[1]?.payload.length, 0, 'the empty retained PUBLISH is forwarded to existing subscribers')
  t.equal(watched[1]?.packet.retain, false)
  t.same(await fresh(5), [], 'an empty retained payload clears the topic and is not stored')
  t.equal(b.app.broker.router.retained.size, 0, 'nothing retained')
})

t.test('v4 and v5 without RAP: live messages to existing subscribers carry RETAIN=0 even when published retained [MQTT-3.3.1-9] [MQTT-3.3.1-12]', async (t) => {
  const b = await startBroker(t)
  const a = await connectClient(t, b.url, { clientId: 'live-v4' })
  const gotA = collect(a)
  await a.subscribeAsync('live/#', { qos: 1 })
  const c = await connectClient(t, b.url, { clientId: 'live-v5', protocolVersion: 5 })
  const gotC = collect(c)
  await c.subscribeAsync('live/#', { qos: 1 })
  const pub = await connectClient(t, b.url, { clientId: 'live-pub' })
  await pub.publishAsync('live/x', 'r', { qos: 1, retain: true })
  await until(() => gotA.length === 1 && gotC.length === 1)
  t.equal(gotA[0]?.packet.retain, false)
  t.equal(gotC[0]?.packet.retain, false)
})

t.test('UNSUBSCRIBE stops delivery; the filter is compared character by character [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5]', async (t) => {
  const b = await startBroker(t)
  const c = await connectClient(t, b.url, { clientId: 'unsub-sub' })
  const got = collect(c)
  await c.subscribeAsync({ 'u/#': { qos: 1 }, 'v/+': { qos: 1 }, other: { qos: 1 } })
  const pub = await connectClient(t, b.url, { clientId: 'unsub-pub' })
  await pub.publishAsync('u/1', 'before', { qos: 1 })
  await until(() => got.length === 1)
  await c.unsubscribeAsync('u/#')
  // 'v/#' is not the filter 'v/+', so nothing is removed and v/ still arrives.
  await c.unsubscribeAsync('v/#')
  await pub.publishAsync('u/2', 'after', { qos: 1 })
  await pub.publishAsync('v/1', 'still', { qos: 1 })
  await pub.publishAsync('other', 'sentinel', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'other'))
  t.same(
    got.map((m) => m.payload.toString()),
    ['before', 'still', 'sentinel'],
  )

  // On the wire: v5 codes per filter in order, 3.1.1 UNSUBACK without payload.
  const { wire: w5 } = await Wire.connect(t, b.port, 5, { clientId: 'unsub-w5' })
  await w5.subscribe([{ topic: 'p/#', qos: 0 }], 1)
  const ack5 = await w5.unsubscribe(['never/subscribed', 'p/#', 'p/#'], 2)
  t.same(ack5.granted, [0x11, 0x00, 0x11], 'v5 UNSUBACK: 0x11 No subscription existed, 0x00 Success')
  const { wire: w4 } = await Wire.connect(t, b.port, 4, { clientId: 'unsub-w4' })
  const ack4 = await w4.unsubscribe(['never/subscribed'], 3)
  t.equal(ack4.messageId, 3, '3.1.1 UNSUBACK even when nothing matched, same packet id')
})

t.test('SUBACK failure code for invalid filters: 0x8F in v5, 0x80 in 3.1.1; valid filters in the same SUBSCRIBE still work [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-3.8.4-4] [MQTT-3.9.3-1]', async (t) => {
  const b = await startBroker(t)
  const filters = ['a/#/b', 'ok5/#', 'a+', '#a', 'a/b#', 'x/+y', '$share/g', '$share/g+/t', 'ok5/+/z']
  const { wire: w5 } = await Wire.connect(t, b.port, 5, { clientId: 'bad-w5' })
  const ack5 = await w5.subscribe(
    filters.map((topic) => ({ topic: topic.replace('ok5', 'ok'), qos: 1 as const })),
    1,
  )
  t.same(ack5.granted, [0x8f, 1, 0x8f, 0x8f, 0x8f, 0x8f, 0x8f, 0x8f, 1], 'v5: one reason code per filter, in order')
  const { wire: w4 } = await Wire.connect(t, b.port, 4, { clientId: 'bad-w4' })
  const ack4 = await w4.subscribe(
    filters.map((topic) => ({ topic: topic.replace('ok5', 'ok'), qos: 2 as const })),
    1,
  )
  t.same(ack4.granted, [0x80, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 2], '3.1.1: 0x80 Failure per invalid filter')
  const pub = await connectClient(t, b.url, { clientId: 'bad-pub' })
  await pub.publishAsync('ok/x', 'x', { qos: 1 })
  await w5.take('publish', (p) => p.topic === 'ok/x')
  await w4.take('publish', (p) => p.topic === 'ok/x')
  t.notOk(w5.isClosed() || w4.isClosed(), 'both connections stay open')
})

t.test('subscribing again to the same filter replaces the subscription and resends retained messages [MQTT-3.8.4-3]', async (t) => {
  const b = await startBroker(t)
  const pub = await connectClient(t, b.url, { clientId: 'rep-pub' })
  await pub.publishAsync('rep/r', 'kept', { qos: 2, retain: true })
  const c = await connectClient(t, b.url, { clientId: 'rep-sub', protocolVersion: 5 })
  const got = collect(c)
  await c.subscribeAsync('rep/#', { qos: 0 })
  await until(() => got.length === 1)
  await c.subscribeAsync('rep/#', { qos: 2 })
  await until(() => got.length === 2, 5000, 'retained message sent again')
  await pub.publishAsync('rep/live', 'live', { qos: 2 })
  await until(() => got.length === 3)
  await pub.publishAsync('rep/sentinel', 's', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'rep/sentinel'))
  t.same(
    got.map((m) => [m.topic, m.packet.qos, m.packet.retain]),
    [
      ['rep/r', 0, true],
      ['rep/r', 2, true],
      ['rep/live', 2, false],
      ['rep/sentinel', 1, false],
    ],
    'one subscription at the new QoS, no duplicate copies',
  )
})

t.test('mosquitto_pub -r / mosquitto_sub: retained delivery, replacement and clearing with -n [MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-10]', async (t) => {
  const b = await startBroker(t)
  const port = String(b.port)
  const sub = (id: string, extra: string[]) =>
    mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-i', id, '-t', 'mr/#', '-F', '%r %q %t %p', '-W', '20', ...extra], 25_000)
  await mosquittoPub(t, b.port, ['-t', 'mr/a', '-m', 'first', '-r', '-q', '1'])
  await mosquittoPub(t, b.port, ['-t', 'mr/a', '-m', 'second', '-r', '-q', '2'])
  await mosquittoPub(t, b.port, ['-V', 'mqttv5', '-t', 'mr/b', '-m', 'other', '-r', '-q', '0'])
  const r1 = await sub('mr-sub-1', ['-q', '2', '-C', '2']).done
  t.equal(r1.code, 0, r1.stderr)
  t.same(r1.stdout.trim().split('\n').sort(), ['1 0 mr/b other', '1 2 mr/a second'], 'retained, replaced, RETAIN=1, QoS min(stored, granted)')

  await mosquittoPub(t, b.port, ['-t', 'mr/a', '-n', '-r', '-q', '1'])
  await mosquittoPub(t, b.port, ['-V', 'mqttv5', '-t', 'mr/b', '-n', '-r'])
  const s2 = sub('mr-sub-2', ['-V', 'mqttv5', '-q', '1', '-C', '1'])
  await until(() => b.app.broker.sessions.get('mr-sub-2')?.subscriptions.has('mr/#') === true, 10_000, 'mosquitto_sub subscribed')
  await mosquittoPub(t, b.port, ['-t', 'mr/sentinel', '-m', 's', '-q', '1'])
  const r2 = await s2.done
  t.equal(r2.code, 0, r2.stderr)
  t.equal(r2.stdout, '0 1 mr/sentinel s\n', 'nothing retained is left; the first message is the live sentinel with RETAIN=0')
})

t.test('mosquitto_sub --remove-retained clears the retained messages it received [MQTT-3.3.1-10] [MQTT-3.3.1-11]', async (t) => {
  const b = await startBroker(t)
  const pub: MqttClient = await connectClient(t, b.url, { clientId: 'rr-pub' })
  await pub.publishAsync('rr/1', 'one', { qos: 1, retain: true })
  await pub.publishAsync('rr/2', 'two', { qos: 1, retain: true })
  // mosquitto_sub 2.0.11 does not exit after --remove-retained (against Mosquitto either), so it is killed.
  const tool = mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-t', 'rr/#', '--remove-retained', '-W', '20'], 25_000)
  await until(() => b.app.broker.router.retained.size === 0, 10_000, 'retained store emptied by mosquitto_sub')
  await until(() => tool.lines().length === 2, 5000, 'mosquitto_sub printed both')
  tool.kill()
  t.same(tool.lines().sort(), ['one', 'two'])
  const c = await connectClient(t, b.url, { clientId: 'rr-check' })
  const got = collect(c)
  await c.subscribeAsync('rr/#', { qos: 1 })
  await pub.publishAsync('rr/sentinel', 's', { qos: 1 })
  await until(() => got.length > 0)
  t.same(
    got.map((m) => m.topic),
    ['rr/sentinel'],
    'a new subscriber gets no retained message',
  )
})
