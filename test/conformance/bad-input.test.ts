import type { Test } from 'tap'
import t from 'tap'
import { logEvents, startBroker, type TestBroker } from '../helpers/broker.js'
import { connectWithAck, healthyPair, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'
import { frame, frames, handConnect, PACKET, rawPublish, str } from '../helpers/wire.js'

// Malformed and forbidden input: each closes only the offending connection (v5: DISCONNECT
// with the reason code first; 3.1.1: a plain close) while a healthy pair keeps working.

type Stat = 'protocolErrors' | 'packetsTooLarge' | 'connectTimeouts'

function stat(b: TestBroker, name: Stat): number {
  return b.app.broker.stats[name]
}

/**
 * Waits for the server to close `w` and checks how: v5 clients get one DISCONNECT with
 * `code` as the last packet; 3.1.1 clients get nothing after their CONNACK.
 */
async function expectClosed(t: Test, w: Wire, version: 4 | 5, code: number, what: string): Promise<void> {
  await until(() => w.isClosed(), 5000, `server to close the connection after ${what}`)
  const got = frames(w.bytes())
  t.equal(got[0]?.type, PACKET.CONNACK, `v${version} ${what}: CONNACK first`)
  if (version === 5) {
    t.equal(got.length, 2, `v${version} ${what}: CONNACK then DISCONNECT, nothing else`)
    t.equal(got[1]?.type, PACKET.DISCONNECT, `v${version} ${what}: DISCONNECT before the close`)
    t.equal(got[1]?.body[0], code, `v${version} ${what}: reason code 0x${code.toString(16)}`)
  } else {
    t.equal(got.length, 1, `v${version} ${what}: plain close, no packet after CONNACK`)
  }
}

/** Connects v4 and v5 bad clients in turn, sends `bytes`, checks the close and the healthy pair. */
async function eachVersion(t: Test, b: TestBroker, name: string, code: number, bytes: (version: 4 | 5) => Buffer): Promise<void> {
  const healthy = await healthyPair(t, b.url)
  for (const version of [4, 5] as const) {
    const { wire: w } = await Wire.connect(t, b.port, version, { clientId: `bad-${name}-${version}` })
    w.sendBytes(bytes(version))
    await expectClosed(t, w, version, code, name)
    await healthy.check()
  }
}

t.test('[MQTT-1.5.5-1] [MQTT-4.13.1-1] a malformed remaining length (0xFF 0xFF 0xFF 0xFF 0xFF) closes with 0x81', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'varint', 0x81, () => Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0xff]))
  t.equal(stat(b, 'protocolErrors'), 2)
  const errors = logEvents(b.logs, 'client.error')
  t.same(
    errors.map((e) => e.reasonCode),
    [0x81, 0x81],
    'client.error logged with reason code 0x81',
  )
  t.same(
    errors.map((e) => e.clientId),
    ['bad-varint-4', 'bad-varint-5'],
    'the log names the offending client',
  )
})

t.test('[MQTT-3.3.2-1] [MQTT-4.13.1-1] a PUBLISH whose topic length runs past the packet is malformed (0x81)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'topic-overrun', 0x81, () => frame(0x30, [0x00, 0x20, 0x61, 0x62]))
  t.equal(stat(b, 'protocolErrors'), 2)
})

t.test('[MQTT-3.2.2-15] [MQTT-4.13.1-1] a packet over limits.maxPacketSize closes with 0x95 Packet too large', async (t) => {
  const b = await startBroker(t, { limits: { maxPacketSize: 1024 } })
  await eachVersion(t, b, 'too-large', 0x95, (version) => rawPublish('big/t', Buffer.alloc(2000, 0x61), { version }))
  t.equal(stat(b, 'packetsTooLarge'), 2)
  t.equal(stat(b, 'protocolErrors'), 0, 'counted as too large, not as a protocol error')
  t.same(
    logEvents(b.logs, 'client.error').map((e) => e.reasonCode),
    [0x95, 0x95],
  )
  // Only the fixed header was needed: a packet announcing 100 MB is refused before its body arrives.
  const { wire: w } = await Wire.connect(t, b.port, 5, { clientId: 'huge-header' })
  w.sendBytes([0x30, 0x80, 0x80, 0x80, 0x30])
  await expectClosed(t, w, 5, 0x95, 'a 100 MB header')
})

t.test('[MQTT-3.1.0-2] a second CONNECT is a protocol error (0x82)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'second-connect', 0x82, (version) => handConnect({ clientId: `again-${version}`, level: version }))
  t.equal(stat(b, 'protocolErrors'), 2)
  t.same(
    logEvents(b.logs, 'client.error').map((e) => e.reasonCode),
    [0x82, 0x82],
  )
})

t.test('[MQTT-3.1.0-1] a PUBLISH before CONNECT closes the connection without a CONNACK', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  for (const version of [4, 5] as const) {
    const w = await Wire.open(t, b.port, version)
    w.sendBytes(rawPublish('early/t', 'too soon', { version }))
    await until(() => w.isClosed(), 5000, 'close')
    t.equal(w.bytes().length, 0, `v${version}: nothing sent back, not even CONNACK`)
    await healthy.check()
  }
  t.equal(stat(b, 'protocolErrors'), 2)
  t.equal(b.app.broker.stats.connectionsTotal, 2, 'only the healthy pair ever connected')
})

t.test('[MQTT-1.5.4-1] [MQTT-3.3.2-1] [MQTT-3.8.3-1] (3.1.1: MQTT-1.5.3-1) an invalid UTF-8 topic (0xC3 0x28) is malformed (0x81)', async (t) => {
  const b = await startBroker(t)
  const bad = Buffer.from([0x74, 0x2f, 0xc3, 0x28])
  await eachVersion(t, b, 'utf8-publish', 0x81, (version) => rawPublish(bad, 'x', { version }))
  // The same bytes in a SUBSCRIBE topic filter.
  await eachVersion(t, b, 'utf8-subscribe', 0x81, (version) =>
    frame(0x82, Buffer.concat([Buffer.from([0x00, 0x01, ...(version === 5 ? [0] : [])]), str(bad), Buffer.from([0x00])])),
  )
  t.equal(stat(b, 'protocolErrors'), 4)
})

t.test('[MQTT-3.3.2-2] [MQTT-4.7.0-1] a wildcard in a PUBLISH topic name closes with 0x90', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'wild-plus', 0x90, (version) => rawPublish('a/+/c', 'x', { version }))
  await eachVersion(t, b, 'wild-hash', 0x90, (version) => rawPublish('a/#', 'x', { version }))
  t.equal(stat(b, 'protocolErrors'), 4)
  t.same(
    logEvents(b.logs, 'client.error').map((e) => e.reasonCode),
    [0x90, 0x90, 0x90, 0x90],
  )
})

t.test('[MQTT-3.3.1-4] QoS 3 in a PUBLISH fixed header closes the connection (0x81)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'qos3', 0x81, (version) => rawPublish('q/t', 'x', { version, qos: 1, first: 0x36 }))
})

t.test('[MQTT-2.1.3-1] [MQTT-3.8.1-1] [MQTT-3.6.1-1] [MQTT-3.10.1-1] (3.1.1: MQTT-2.2.2-2) reserved fixed-header flags (SUBSCRIBE 0x80, PUBREL 0x60, UNSUBSCRIBE 0xA0) close the connection (0x81)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'subscribe-flags', 0x81, (version) =>
    frame(0x80, Buffer.concat([Buffer.from([0x00, 0x01, ...(version === 5 ? [0] : [])]), str('ok/t'), Buffer.from([0x00])])),
  )
  await eachVersion(t, b, 'pubrel-flags', 0x81, () => Buffer.from([0x60, 0x02, 0x00, 0x01]))
  await eachVersion(t, b, 'unsubscribe-flags', 0x81, (version) => frame(0xa0, Buffer.concat([Buffer.from([0x00, 0x01, ...(version === 5 ? [0] : [])]), str('ok/t')])))
  t.equal(stat(b, 'protocolErrors'), 6)
})

t.test('[MQTT-3.8.3-2] [MQTT-3.10.3-2] (3.1.1: MQTT-3.8.3-3) SUBSCRIBE or UNSUBSCRIBE without topic filters is a protocol error (0x82)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'empty-subscribe', 0x82, (version) => frame(0x82, [0x00, 0x07, ...(version === 5 ? [0] : [])]))
  await eachVersion(t, b, 'empty-unsubscribe', 0x82, (version) => frame(0xa2, [0x00, 0x08, ...(version === 5 ? [0] : [])]))
  t.equal(stat(b, 'protocolErrors'), 4)
})

t.test('[MQTT-2.2.1-3] [MQTT-3.3.1-2] (3.1.1: MQTT-2.3.1-1) a QoS 1 PUBLISH with packet id 0, and DUP on QoS 0, are malformed (0x81)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'id-zero', 0x81, (version) => rawPublish('id/t', 'x', { version, qos: 1, id: 0 }))
  await eachVersion(t, b, 'dup-qos0', 0x81, (version) => rawPublish('id/t', 'x', { version, first: 0x38 }))
})

t.test('[MQTT-4.13.1-1] server-to-client packets (PINGRESP, SUBACK) from a client are protocol errors (0x82)', async (t) => {
  const b = await startBroker(t)
  await eachVersion(t, b, 'pingresp', 0x82, () => Buffer.from([0xd0, 0x00]))
  await eachVersion(t, b, 'suback', 0x82, (version) => frame(0x90, [0x00, 0x01, ...(version === 5 ? [0] : []), 0x00]))
})

t.test('[MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.2.2-17] v5 topic alias 0 or above the announced maximum closes with 0x94', async (t) => {
  const b = await startBroker(t, { limits: { topicAliasMaximum: 4 } })
  const healthy = await healthyPair(t, b.url)
  for (const alias of [0, 5]) {
    const { wire: w } = await Wire.connect(t, b.port, 5, { clientId: `alias-${alias}` })
    w.send({ cmd: 'publish', topic: 'alias/t', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: alias } })
    await expectClosed(t, w, 5, 0x94, `topic alias ${alias}`)
    await healthy.check()
  }
  // A valid alias works, and an alias used before it was set is a protocol error.
  const { wire: ok } = await Wire.connect(t, b.port, 5, { clientId: 'alias-ok' })
  await ok.subscribe([{ topic: 'alias/#', qos: 0 }], 1)
  ok.send({ cmd: 'publish', topic: 'alias/set', payload: Buffer.from('one'), qos: 0, retain: false, dup: false, properties: { topicAlias: 4 } })
  ok.send({ cmd: 'publish', topic: '', payload: Buffer.from('two'), qos: 0, retain: false, dup: false, properties: { topicAlias: 4 } })
  await until(() => ok.all('publish').length === 2, 5000, 'both aliased messages')
  t.same(
    ok.all('publish').map((p) => [p.topic, p.payload.toString()]),
    [
      ['alias/set', 'one'],
      ['alias/set', 'two'],
    ],
  )
  const { wire: unset } = await Wire.connect(t, b.port, 5, { clientId: 'alias-unset' })
  unset.send({ cmd: 'publish', topic: '', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } })
  await expectClosed(t, unset, 5, 0x82, 'an unset topic alias')
  await healthy.check()
})

t.test('[MQTT-3.1.0-1] (3.1.4 CONNECT timeout) a client that connects TCP and sends nothing is closed after the CONNECT timeout', async (t) => {
  const b = await startBroker(t, { limits: { connectTimeout: 1 } })
  const healthy = await healthyPair(t, b.url)
  const silent = await Wire.open(t, b.port, 4)
  await until(() => silent.isClosed(), 5000, 'connect timeout close')
  t.equal(silent.bytes().length, 0, 'nothing was sent to it')
  t.equal(stat(b, 'connectTimeouts'), 1)
  t.equal(logEvents(b.logs, 'connect.timeout').length, 1, 'connect.timeout logged')
  await healthy.check()
  t.equal(stat(b, 'connectTimeouts'), 1, 'the healthy pair, connected in time, was not timed out')
})

t.test('[MQTT-3.1.2-2] [MQTT-3.2.2-5] (3.1.1) an unknown protocol level gets CONNACK return code 1, then the close', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  for (const level of [6, 2, 0x7f]) {
    const w = await Wire.open(t, b.port, 4)
    w.sendBytes(handConnect({ clientId: `level-${level}`, level }))
    await until(() => w.isClosed(), 5000, 'close')
    t.same([...w.bytes()], [0x20, 0x02, 0x00, 0x01], `level ${level}: CONNACK 0x01 Unacceptable protocol version, then close`)
    await healthy.check()
  }
  t.equal(b.app.broker.liveCount, 2, 'only the healthy pair is connected')
})

t.test('[MQTT-3.1.2-1] a CONNECT with a bad protocol name is not accepted and is closed', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  for (const name of ['MQTX', 'mqtt', 'MQIsdq']) {
    const w = await Wire.open(t, b.port, 4)
    w.sendBytes(handConnect({ clientId: `name-${name}`, protocolName: name, level: 4 }))
    await until(() => w.isClosed(), 5000, 'close')
    const back = [...w.bytes()]
    t.ok(back.length === 0 || (back.length === 4 && back[0] === 0x20 && back[3] !== 0), `${name}: closed with no CONNACK, or a refusing one (${back.join(',')})`)
    await healthy.check()
  }
  t.equal(b.app.broker.stats.connectionsTotal, 2, 'no bad client was accepted')
})

t.test('[MQTT-3.1.2-3] a CONNECT with the reserved flag bit set closes the connection without acceptance', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  for (const level of [4, 5]) {
    const w = await Wire.open(t, b.port, 4)
    w.sendBytes(handConnect({ clientId: `reserved-${level}`, level, flags: 0x03 }))
    await until(() => w.isClosed(), 5000, 'close')
    const back = frames(w.bytes())
    t.notOk(
      back.some((f) => f.type === PACKET.CONNACK && f.body[1] === 0),
      `v${level}: no successful CONNACK`,
    )
    await healthy.check()
  }
  t.equal(b.app.broker.stats.connectionsTotal, 2)
  t.equal(stat(b, 'protocolErrors'), 2)
})

t.test('[MQTT-3.1.2-12] [MQTT-3.1.4-1] (3.1.1: MQTT-3.1.2-14) a CONNECT with Will QoS 3 is malformed: 3.1.1 closes without CONNACK, v5 may answer 0x81', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  const watcher = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'willqos3-watch' })
  await watcher.client.subscribeAsync('wq3/#', { qos: 2 })
  for (const level of [4, 5] as const) {
    const w = await Wire.open(t, b.port, level)
    const willProps = level === 5 ? Buffer.from([0]) : Buffer.alloc(0)
    w.sendBytes(handConnect({ clientId: `willqos3-${level}`, level, flags: 0x02 | 0x04 | 0x18, tail: Buffer.concat([willProps, str('wq3/t'), str('x')]) }))
    await until(() => w.isClosed(), 5000, 'close')
    if (level === 4) t.equal(w.bytes().length, 0, '3.1.1: closed without a CONNACK [MQTT-3.1.4-1]')
    else {
      t.same(
        w.packets.map((p) => p.cmd),
        ['connack'],
        'v5: one CONNACK, then close',
      )
      t.equal(w.all('connack')[0]?.reasonCode, 0x81, 'v5: CONNACK 0x81 Malformed Packet')
    }
    await healthy.check()
  }
  t.equal(b.app.broker.stats.connectionsTotal, 3, 'neither was accepted')
  t.equal(watcher.messages.length, 0, 'no will with QoS 3 was ever published')
})

t.test('[MQTT-3.1.2-11] [MQTT-3.1.2-13] (3.1.1: MQTT-3.1.2-13, MQTT-3.1.2-15) Will QoS or Will Retain set without the Will Flag closes the connection', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  for (const flags of [0x02 | 0x08, 0x02 | 0x20]) {
    for (const level of [4, 5] as const) {
      const w = await Wire.open(t, b.port, level)
      w.sendBytes(handConnect({ clientId: `willflags-${flags}-${level}`, level, flags }))
      await until(() => w.isClosed(), 5000, 'close')
      t.equal(w.bytes().length, 0, `v${level} flags 0x${flags.toString(16)}: closed without CONNACK`)
      await healthy.check()
    }
  }
  t.equal(b.app.broker.stats.connectionsTotal, 2)
})

t.test('[MQTT-3.1.2-22] (3.1.1) 3.1.1 forbids a password without a user name; MQTT 5 allows it', async (t) => {
  const b = await startBroker(t)
  const healthy = await healthyPair(t, b.url)
  const w4 = await Wire.open(t, b.port, 4)
  w4.sendBytes(handConnect({ clientId: 'pw-only-4', level: 4, flags: 0x42, tail: str('secret') }))
  await until(() => w4.isClosed(), 5000, 'close')
  t.equal(w4.bytes().length, 0, '3.1.1: closed without CONNACK')
  await healthy.check()
  const w5 = await Wire.open(t, b.port, 5)
  w5.sendBytes(handConnect({ clientId: 'pw-only-5', level: 5, flags: 0x42, tail: str('secret') }))
  const ack = await w5.take('connack')
  t.equal(ack.reasonCode, 0, 'v5: accepted (open authentication)')
  t.notOk(w5.isClosed())
})

t.test('[MQTT-4.2.0-1] a session delivered one byte at a time is framed correctly', async (t) => {
  const b = await startBroker(t)
  const w = await Wire.open(t, b.port, 5)
  const bytes = Buffer.concat([
    handConnect({ clientId: 'trickle', level: 5 }),
    frame(0x82, Buffer.concat([Buffer.from([0x00, 0x01, 0x00]), str('trickle/t'), Buffer.from([0x01])])),
    rawPublish('trickle/t', Buffer.alloc(300, 0x74), { version: 5 }),
  ])
  for (const byte of bytes) {
    w.sendBytes([byte])
    await new Promise((r) => setImmediate(r))
  }
  const got = await w.take('publish')
  t.equal(got.payload.length, 300, 'the trickled PUBLISH came back whole')
  t.same(
    w.packets.map((p) => p.cmd),
    ['connack', 'suback', 'publish'],
  )
  t.equal(b.app.broker.stats.protocolErrors, 0)
})
