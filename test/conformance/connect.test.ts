import type { IClientOptions } from 'mqtt'
import t from 'tap'
import { logEvents, startBroker } from '../helpers/broker.js'
import { mosquitto } from '../helpers/cli.js'
import { closedPromise, connectWithAck, sleep, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'
import { frames, handConnect, PACKET, type Version } from '../helpers/wire.js'

// CONNECT / CONNACK, keepalive, PINGREQ, session takeover, clean start, session expiry and
// enhanced authentication, for MQTT 3.1, 3.1.1 and 5.0, over real sockets.

/** MQTT.js options for a session that outlives its connection (v5: Session Expiry 300 s). */
function persistentOptions(version: 4 | 5, clientId: string): IClientOptions {
  return version === 5 ? { protocolVersion: 5, clientId, clean: false, properties: { sessionExpiryInterval: 300 } } : { protocolVersion: 4, clientId, clean: false }
}

t.test('[MQTT-3.1.2-1] [MQTT-3.1.2-2] MQTT 3.1 (MQIsdp, level 3) CONNECT is accepted and the client can publish and subscribe', async (t) => {
  const b = await startBroker(t)
  const { wire: w, connack } = await Wire.connect(t, b.port, 3, { clientId: 'v31-raw' })
  t.equal(connack.returnCode, 0, 'CONNACK return code 0')
  t.same([...w.bytes().subarray(0, 4)], [0x20, 0x02, 0x00, 0x00], 'CONNACK bytes: type 2, length 2, no flags, accepted')

  const { client, connack: ack, messages } = await connectWithAck(t, b.url, { protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'v31-js' })
  t.equal(ack.returnCode, 0)
  await client.subscribeAsync('v31/#', { qos: 1 })
  await client.publishAsync('v31/a', 'from 3.1', { qos: 1 })
  await until(() => messages.length === 1, 5000, 'MQTT 3.1 message')
  t.equal(messages[0]?.topic, 'v31/a')
  t.equal(messages[0]?.payload.toString(), 'from 3.1')
  const connected = logEvents(b.logs, 'client.connected').find((l) => l.clientId === 'v31-js')
  t.equal(connected?.version, 3, 'the broker recorded protocol level 3')
})

t.test('[MQTT-3.1.2-2] mosquitto_pub/mosquitto_sub interoperate with perch over MQTT 3.1, 3.1.1 and 5.0', async (t) => {
  const b = await startBroker(t)
  const versions: [string, Version][] = [
    ['mqttv31', 3],
    ['mqttv311', 4],
    ['mqttv5', 5],
  ]
  for (const [flag, level] of versions) {
    const topic = `cli/${flag}`
    const subId = `cli-sub-${flag}`
    const sub = mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', flag, '-i', subId, '-q', '1', '-t', topic, '-C', '1', '-W', '10'])
    await until(() => b.app.broker.sessions.get(subId)?.subscriptions.has(topic) === true, 8000, `mosquitto_sub ${flag} subscribed`)
    const pub = await mosquitto(t, 'mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', flag, '-i', `cli-pub-${flag}`, '-q', '1', '-t', topic, '-m', `hello ${flag}`]).done
    t.equal(pub.code, 0, `mosquitto_pub ${flag} exited 0 (${pub.stderr.trim()})`)
    const res = await sub.done
    t.equal(res.code, 0, `mosquitto_sub ${flag} exited 0 after one message`)
    t.equal(res.stdout.trim(), `hello ${flag}`, `${flag} message delivered`)
    const versionsSeen = logEvents(b.logs, 'client.connected')
      .filter((l) => l.clientId === subId || l.clientId === `cli-pub-${flag}`)
      .map((l) => l.version)
    t.same(versionsSeen, [level, level], `both ${flag} clients connected at protocol level ${level}`)
  }
})

t.test('[MQTT-3.2.0-1] [MQTT-3.2.2-1] (3.1.1) 3.1.1 CONNACK is the first packet back, with session present 0 on a clean session', async (t) => {
  const b = await startBroker(t)
  const { wire: w, connack } = await Wire.connect(t, b.port, 4, { clientId: 'raw311', clean: true })
  t.equal(connack.returnCode, 0)
  t.equal(connack.sessionPresent, false)
  t.same([...w.bytes()], [0x20, 0x02, 0x00, 0x00], 'exactly one CONNACK: 20 02 00 00')
})

t.test('[MQTT-3.2.2-15] [MQTT-3.2.2-17] [MQTT-4.9.0-1] [MQTT-4.12.0-6] v5 CONNACK announces the server limits and capabilities as properties', async (t) => {
  const b = await startBroker(t, { limits: { receiveMaximum: 20, maxPacketSize: 4096, topicAliasMaximum: 7 } })
  const { connack } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'props', keepalive: 30 })
  t.equal(connack.reasonCode, 0)
  const p = connack.properties ?? {}
  t.equal(p.receiveMaximum, 20, 'Receive Maximum from limits.receiveMaximum')
  t.equal(p.maximumPacketSize, 4096, 'Maximum Packet Size from limits.maxPacketSize')
  t.equal(p.topicAliasMaximum, 7, 'Topic Alias Maximum from limits.topicAliasMaximum')
  t.equal(p.retainAvailable, true, 'Retain Available')
  t.equal(p.wildcardSubscriptionAvailable, true, 'Wildcard Subscription Available')
  t.equal(p.subscriptionIdentifiersAvailable, true, 'Subscription Identifiers Available')
  t.equal(p.sharedSubscriptionAvailable, true, 'Shared Subscription Available')
  t.equal(p.assignedClientIdentifier, undefined, 'no Assigned Client Identifier when the client sent one')
  t.equal(p.serverKeepAlive, undefined, 'no Server Keep Alive when the requested keepalive is acceptable')
  t.equal(p.authenticationMethod, undefined, 'no Authentication Method when the client sent none [MQTT-4.12.0-6]')

  // A 3.1.1 CONNACK from the same broker carries no properties at all.
  const { wire: w } = await Wire.connect(t, b.port, 4, { clientId: 'props-311' })
  t.same([...w.bytes()], [0x20, 0x02, 0x00, 0x00], '3.1.1 CONNACK has no properties')
})

t.test('[MQTT-3.1.3-6] [MQTT-3.2.2-16] an empty v5 client id gets an Assigned Client Identifier that works', async (t) => {
  const b = await startBroker(t)
  const { wire: a, connack: ackA } = await Wire.connect(t, b.port, 5, { clientId: '', protocolVersion: 5 })
  const { connack: ackB } = await Wire.connect(t, b.port, 5, { clientId: '', protocolVersion: 5 })
  t.equal(ackA.reasonCode, 0)
  const idA = ackA.properties?.assignedClientIdentifier
  const idB = ackB.properties?.assignedClientIdentifier
  t.type(idA, 'string')
  t.ok(idA !== undefined && idA.length > 0, 'assigned id is not empty')
  t.not(idA, idB, 'each client gets its own id')
  t.ok(idA !== undefined && b.app.broker.hasLive(idA), 'the broker knows the client by the assigned id')
  // The assigned id is a working client: it can subscribe and receive.
  t.same((await a.subscribe([{ topic: 'assigned/t', qos: 1 }], 1)).granted, [1])
  a.send({ cmd: 'publish', topic: 'assigned/t', payload: Buffer.from('self'), qos: 0, retain: false, dup: false })
  const got = await a.take('publish')
  t.equal(got.payload.toString(), 'self')
})

t.test('[MQTT-3.1.3-6] [MQTT-3.1.3-7] 3.1.1 empty client id with clean session 1 is accepted', async (t) => {
  const b = await startBroker(t)
  const { connack } = await Wire.connect(t, b.port, 4, { clientId: '', clean: true })
  t.equal(connack.returnCode, 0)
  t.equal(connack.sessionPresent, false)
})

t.test('[MQTT-3.1.3-8] [MQTT-3.2.2-4] (3.1.1) 3.1.1 empty client id with clean session 0 is refused with return code 2 and closed', async (t) => {
  const b = await startBroker(t)
  const w = await Wire.open(t, b.port, 4)
  w.sendBytes(handConnect({ clientId: '', flags: 0x00 }))
  const connack = await w.take('connack')
  t.equal(connack.returnCode, 2, 'identifier rejected')
  t.equal(connack.sessionPresent, false, 'session present 0 on a refusal')
  await until(() => w.isClosed(), 5000, 'close after refusal')
  t.same([...w.bytes()], [0x20, 0x02, 0x00, 0x02], 'CONNACK 20 02 00 02 and nothing else')
  t.equal(b.app.broker.liveCount, 0)
  t.equal(b.app.broker.sessions.size, 0, 'no session was created')
})

t.test('[MQTT-3.1.3-5] MQTT 3.1 client ids must be 1 to 23 characters: others are refused with return code 2', async (t) => {
  const b = await startBroker(t)
  const empty = await Wire.open(t, b.port, 3)
  empty.sendBytes(handConnect({ clientId: '', level: 3 }))
  t.equal((await empty.take('connack')).returnCode, 2, 'empty 3.1 id refused')
  await until(() => empty.isClosed(), 5000, 'close after refusal')
  const long = await Wire.open(t, b.port, 3)
  const longAck = await long.handshake({ clientId: 'x'.repeat(24) })
  t.equal(longAck.returnCode, 2, '24-character 3.1 id refused')
  await until(() => long.isClosed(), 5000, 'close after refusal')
  const { wire: ok, connack: okAck } = await Wire.connect(t, b.port, 3, { clientId: 'y'.repeat(23) })
  t.equal(okAck.returnCode, 0, '23-character 3.1 id accepted')
  t.notOk(ok.isClosed())
})

t.test('[MQTT-3.1.2-24] (3.1.1) keepalive: pings keep the connection, silence for 1.5x keepalive closes it without a packet', async (t) => {
  const b = await startBroker(t)
  const { wire: w } = await Wire.connect(t, b.port, 4, { clientId: 'ka311', keepalive: 1 })
  const timer = setInterval(() => w.send({ cmd: 'pingreq' }), 300)
  t.teardown(() => clearInterval(timer))
  await sleep(2500)
  clearInterval(timer)
  t.notOk(w.isClosed(), 'a client that sends PINGREQ within the keepalive stays connected')
  t.ok(w.all('pingresp').length >= 4, 'each PINGREQ was answered')
  await until(() => w.isClosed(), 5000, 'keepalive close')
  t.equal(w.all('disconnect').length, 0, 'no DISCONNECT in 3.1.1')
  t.equal(b.app.broker.stats.keepaliveTimeouts, 1)
  t.equal(logEvents(b.logs, 'client.keepalive-timeout').length, 1)
})

t.test('[MQTT-3.1.2-22] [MQTT-4.13.2-1] v5 keepalive timeout: DISCONNECT 0x8D then close', async (t) => {
  const b = await startBroker(t)
  const { wire: w } = await Wire.connect(t, b.port, 5, { clientId: 'ka5', keepalive: 1 })
  await until(() => w.isClosed(), 5000, 'keepalive close')
  t.equal(w.disconnectCode(), 0x8d, 'Keep Alive timeout')
  const last = frames(w.bytes()).at(-1)
  t.equal(last?.type, PACKET.DISCONNECT, 'DISCONNECT is the last packet before the close')
  t.equal(b.app.broker.stats.keepaliveTimeouts, 1)
})

t.test('[MQTT-3.2.2-21] [MQTT-3.2.2-22] v5 Server Keep Alive is reported when the requested keepalive exceeds maxKeepalive, and enforced', async (t) => {
  const b = await startBroker(t, { limits: { maxKeepalive: 10 } })
  const { connack: high } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'ska-high', keepalive: 60 })
  t.equal(high.properties?.serverKeepAlive, 10, 'keepalive 60 lowered to 10')
  const { connack: zero } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'ska-zero', keepalive: 0 })
  t.equal(zero.properties?.serverKeepAlive, 10, 'keepalive 0 (none) replaced by the maximum')
  const { connack: low } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'ska-low', keepalive: 5 })
  t.equal(low.properties?.serverKeepAlive, undefined, 'keepalive within the maximum is not overridden')

  // The server's value is the one enforced: asked 60 s, told 1 s, silent => 0x8D.
  const b1 = await startBroker(t, { limits: { maxKeepalive: 1 } })
  const { wire: w, connack } = await Wire.connect(t, b1.port, 5, { clientId: 'ska-enforced', keepalive: 60 })
  t.equal(connack.properties?.serverKeepAlive, 1)
  await until(() => w.isClosed(), 5000, 'server keepalive close')
  t.equal(w.disconnectCode(), 0x8d)
})

t.test('[MQTT-3.1.2-24] [MQTT-3.2.2-4] (3.1.1) a 3.1.1 client with a keepalive above maxKeepalive is refused (return code 2)', async (t) => {
  const b = await startBroker(t, { limits: { maxKeepalive: 10 } })
  const w = await Wire.open(t, b.port, 4)
  const connack = await w.handshake({ clientId: 'ka-over', keepalive: 11 })
  t.equal(connack.returnCode, 2)
  t.equal(connack.sessionPresent, false)
  await until(() => w.isClosed(), 5000, 'close after refusal')
  const unbounded = await Wire.open(t, b.port, 4)
  const none = await unbounded.handshake({ clientId: 'ka-none', keepalive: 0 })
  t.equal(none.returnCode, 2, 'keepalive 0 (unbounded) is above any maximum too')
  const { connack: ok } = await Wire.connect(t, b.port, 4, { clientId: 'ka-ok', keepalive: 10 })
  t.equal(ok.returnCode, 0, 'keepalive equal to the maximum is accepted')
  t.equal(b.app.broker.liveCount, 1)
})

t.test('[MQTT-3.12.4-1] PINGREQ is answered with PINGRESP (3.1.1 and 5.0)', async (t) => {
  const b = await startBroker(t)
  for (const version of [4, 5] as const) {
    const { wire: w } = await Wire.connect(t, b.port, version, { clientId: `ping-${version}` })
    const before = w.bytes().length
    w.sendBytes([0xc0, 0x00])
    await w.take('pingresp')
    t.same([...w.bytes().subarray(before)], [0xd0, 0x00], `v${version}: PINGRESP bytes d0 00`)
    t.notOk(w.isClosed())
  }
})

t.test('[MQTT-3.1.4-3] session takeover: the old v5 connection gets DISCONNECT 0x8E, the new one works', async (t) => {
  const b = await startBroker(t)
  const { client: old } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'dup' })
  const reasons: number[] = []
  old.on('disconnect', (p) => reasons.push(p.reasonCode ?? 0))
  const oldClosed = closedPromise(old)
  const { client: fresh, connack, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'dup' })
  t.equal(connack.reasonCode, 0)
  await until(() => reasons.length > 0, 5000, 'DISCONNECT on the old connection')
  t.same(reasons, [0x8e], 'Session taken over')
  await oldClosed
  t.equal(b.app.broker.liveCount, 1, 'one live connection for the id')
  await fresh.subscribeAsync('takeover/t', { qos: 1 })
  await fresh.publishAsync('takeover/t', 'new works', { qos: 1 })
  await until(() => messages.length === 1, 5000, 'message on the new connection')
  t.equal(messages[0]?.payload.toString(), 'new works')
})

t.test('[MQTT-3.1.4-2] (3.1.1) 3.1.1 takeover closes the old connection without a DISCONNECT packet', async (t) => {
  const b = await startBroker(t)
  const { wire: old } = await Wire.connect(t, b.port, 4, { clientId: 'dup311' })
  const { connack } = await Wire.connect(t, b.port, 4, { clientId: 'dup311' })
  t.equal(connack.returnCode, 0)
  await until(() => old.isClosed(), 5000, 'old connection closed')
  t.same(
    old.packets.map((p) => p.cmd),
    ['connack'],
    'nothing but the CONNACK on the old connection',
  )
})

t.test('[MQTT-3.1.4-3] [MQTT-3.2.2-3] takeover with a persistent session carries the subscriptions over', async (t) => {
  const b = await startBroker(t)
  for (const version of [4, 5] as const) {
    const id = `carry-${version}`
    const opts = persistentOptions(version, id)
    const { client: old } = await connectWithAck(t, b.url, opts)
    await old.subscribeAsync(`carry${version}/#`, { qos: 1 })
    const oldClosed = closedPromise(old)
    const { connack, messages } = await connectWithAck(t, b.url, opts)
    t.equal(connack.sessionPresent, true, `v${version}: session present after takeover`)
    await oldClosed
    const { client: pub } = await connectWithAck(t, b.url, { clientId: `carry-pub-${version}` })
    await pub.publishAsync(`carry${version}/x`, 'carried', { qos: 1 })
    await until(() => messages.length === 1, 5000, 'message through the carried subscription')
    t.equal(messages[0]?.topic, `carry${version}/x`)
    t.equal(messages[0]?.packet.qos, 1)
  }
})

t.test('[MQTT-3.1.2-4] [MQTT-3.2.2-2] clean session / clean start discards the old session', async (t) => {
  const b = await startBroker(t)
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'clean-pub' })
  for (const version of [4, 5] as const) {
    const id = `clean-${version}`
    const persistent = persistentOptions(version, id)
    const { client: first } = await connectWithAck(t, b.url, persistent)
    await first.subscribeAsync(`old${version}/t`, { qos: 1 })
    await first.endAsync()
    await until(() => !b.app.broker.hasLive(id), 5000, 'first connection gone')
    // Queued while offline, then thrown away by the clean start.
    await pub.publishAsync(`old${version}/t`, 'queued-before-clean', { qos: 1 })
    t.equal(b.app.broker.sessions.get(id)?.queued, 1, 'the stored session holds the offline message')

    const cleanOpts = { protocolVersion: version, clientId: id, clean: true }
    const { client: again, connack, messages } = await connectWithAck(t, b.url, cleanOpts)
    t.equal(connack.sessionPresent, false, `v${version}: session present 0 after a clean start`)
    await again.subscribeAsync(`sentinel${version}/t`, { qos: 1 })
    await pub.publishAsync(`old${version}/t`, 'after-clean', { qos: 1 })
    await pub.publishAsync(`sentinel${version}/t`, 'sentinel', { qos: 1 })
    await until(() => messages.some((m) => m.payload.toString() === 'sentinel'), 5000, 'sentinel')
    t.same(
      messages.map((m) => m.payload.toString()),
      ['sentinel'],
      'neither the queued message nor the old subscription survived',
    )
  }
})

t.test('[MQTT-3.1.2-5] [MQTT-3.2.2-3] [MQTT-3.1.2-23] a persistent session resumes: session present, subscription active, offline QoS 1 delivered', async (t) => {
  const b = await startBroker(t)
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'persist-pub' })
  for (const version of [4, 5] as const) {
    const id = `persist-${version}`
    const opts = persistentOptions(version, id)
    const { client: first, connack: firstAck } = await connectWithAck(t, b.url, opts)
    t.equal(firstAck.sessionPresent, false, 'no session the first time')
    await first.subscribeAsync(`persist${version}/t`, { qos: 1 })
    await first.endAsync()
    await until(() => !b.app.broker.hasLive(id), 5000, 'disconnected')
    for (let i = 1; i <= 3; i++) await pub.publishAsync(`persist${version}/t`, `offline-${i}`, { qos: 1 })

    const { connack, messages } = await connectWithAck(t, b.url, opts)
    t.equal(connack.sessionPresent, true, `v${version}: session present`)
    await until(() => messages.length === 3, 5000, 'queued messages')
    t.same(
      messages.map((m) => m.payload.toString()),
      ['offline-1', 'offline-2', 'offline-3'],
      'queued QoS 1 messages delivered in order',
    )
    t.ok(
      messages.every((m) => m.packet.qos === 1),
      'at QoS 1',
    )
    await pub.publishAsync(`persist${version}/t`, 'online', { qos: 1 })
    await until(() => messages.length === 4, 5000, 'live message through the resumed subscription')
    t.equal(messages[3]?.payload.toString(), 'online')
  }
})

t.test('[MQTT-3.1.2-5] mosquitto_sub -c resumes its persistent session and receives what was queued', async (t) => {
  const b = await startBroker(t)
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'cli-persist-pub' })
  for (const flag of ['mqttv311', 'mqttv5']) {
    const id = `cli-persist-${flag}`
    const topic = `clip/${flag}`
    const common = ['-h', '127.0.0.1', '-p', String(b.port), '-V', flag, '-i', id, '-c', '-q', '1', '-t', topic]
    if (flag === 'mqttv5') common.push('-x', '300')
    const first = mosquitto(t, 'mosquitto_sub', common)
    await until(() => b.app.broker.sessions.get(id)?.subscriptions.has(topic) === true, 8000, `${flag} subscribed`)
    first.kill('SIGKILL')
    await first.done
    await until(() => !b.app.broker.hasLive(id), 5000, 'first mosquitto_sub gone')
    await pub.publishAsync(topic, 'queued-1', { qos: 1 })
    await pub.publishAsync(topic, 'queued-2', { qos: 1 })
    const second = await mosquitto(t, 'mosquitto_sub', [...common, '-C', '2', '-W', '8']).done
    t.equal(second.code, 0, `${flag}: mosquitto_sub got its two messages (${second.stderr.trim()})`)
    t.same(second.stdout.trim().split('\n'), ['queued-1', 'queued-2'], `${flag}: queued messages delivered in order`)
  }
})

t.test('[MQTT-3.2.2-1] MQTT 3.1 CONNACK has no session present flag even when the session is resumed', async (t) => {
  const b = await startBroker(t)
  const { wire: first } = await Wire.connect(t, b.port, 3, { clientId: 'v31-persist', clean: false })
  t.same((await first.subscribe([{ topic: 'v31p/t', qos: 1 }], 1)).granted, [1])
  first.send({ cmd: 'disconnect' })
  await until(() => !b.app.broker.hasLive('v31-persist'), 5000, 'disconnected')
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'v31-persist-pub' })
  await pub.publishAsync('v31p/t', 'kept', { qos: 1 })
  const { wire: again } = await Wire.connect(t, b.port, 3, { clientId: 'v31-persist', clean: false })
  const bytes = [...again.bytes().subarray(0, 4)]
  t.same(bytes, [0x20, 0x02, 0x00, 0x00], 'the 3.1 CONNACK acknowledge-flags byte is reserved (0)')
  const got = await again.take('publish')
  t.equal(got.payload.toString(), 'kept', 'the 3.1 session was resumed nonetheless')
})

t.test('[MQTT-3.1.2-23] [MQTT-4.1.0-2] v5 session expiry 1 s: the session is gone after it expires', async (t) => {
  const b = await startBroker(t)
  const opts = { protocolVersion: 5 as const, clientId: 'exp1', clean: false, properties: { sessionExpiryInterval: 1 } }
  const { client: first } = await connectWithAck(t, b.url, opts)
  await first.subscribeAsync('exp1/t', { qos: 1 })
  await first.endAsync()
  await until(() => b.app.broker.sessions.get('exp1') === undefined, 5000, 'session expired')
  t.equal(b.app.broker.stats.sessionsExpired, 1, 'removed by the expiry timer, not at disconnect')
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'exp1-pub' })
  await pub.publishAsync('exp1/t', 'after-expiry', { qos: 1 })
  const { client: again, connack, messages } = await connectWithAck(t, b.url, opts)
  t.equal(connack.sessionPresent, false, 'session present 0 after expiry')
  await again.subscribeAsync('exp1/sentinel', { qos: 1 })
  await pub.publishAsync('exp1/t', 'old-sub', { qos: 1 })
  await pub.publishAsync('exp1/sentinel', 'sentinel', { qos: 1 })
  await until(() => messages.length > 0, 5000, 'sentinel')
  t.same(
    messages.map((m) => m.payload.toString()),
    ['sentinel'],
    'the expired subscription delivers nothing',
  )
})

t.test('[MQTT-3.1.2-23] v5 session expiry 0 (absent): the session ends with the connection', async (t) => {
  const b = await startBroker(t)
  const { client: first } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'exp0', clean: false })
  await first.subscribeAsync('exp0/t', { qos: 1 })
  await first.endAsync()
  await until(() => !b.app.broker.hasLive('exp0'), 5000, 'disconnected')
  t.equal(b.app.broker.sessions.get('exp0'), undefined, 'no stored session')
  const { connack } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'exp0', clean: false })
  t.equal(connack.sessionPresent, false)
  t.equal(b.app.broker.stats.sessionsExpired, 0, 'ended at disconnect, not by a timer')
})

t.test('[MQTT-3.1.2-23] [MQTT-3.14.2-2] v5 DISCONNECT may change the session expiry interval', async (t) => {
  const b = await startBroker(t)

  // 300 at CONNECT, 0 at DISCONNECT: ended now.
  const { client: a } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'dexp-a', clean: false, properties: { sessionExpiryInterval: 300 } })
  await a.subscribeAsync('dexp/a', { qos: 1 })
  await a.endAsync(false, { reasonCode: 0, properties: { sessionExpiryInterval: 0 } })
  await until(() => !b.app.broker.hasLive('dexp-a'), 5000, 'a disconnected')
  const { connack: ackA } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'dexp-a', clean: false, properties: { sessionExpiryInterval: 300 } })
  t.equal(ackA.sessionPresent, false, 'DISCONNECT with expiry 0 ended the session')

  // 1 at CONNECT, 300 at DISCONNECT: still there after the original second.
  const { client: c } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'dexp-c', clean: false, properties: { sessionExpiryInterval: 1 } })
  await c.subscribeAsync('dexp/c', { qos: 1 })
  await c.endAsync(false, { reasonCode: 0, properties: { sessionExpiryInterval: 300 } })
  await until(() => !b.app.broker.hasLive('dexp-c'), 5000, 'c disconnected')
  await sleep(2200)
  const { connack: ackC, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'dexp-c', clean: false, properties: { sessionExpiryInterval: 1 } })
  t.equal(ackC.sessionPresent, true, 'DISCONNECT extended the session beyond its original 1 s')
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'dexp-pub' })
  await pub.publishAsync('dexp/c', 'still subscribed', { qos: 1 })
  await until(() => messages.length === 1, 5000, 'message through the kept subscription')

  // 0 at CONNECT, non-zero at DISCONNECT: protocol error.
  const { wire: w } = await Wire.connect(t, b.port, 5, { clientId: 'dexp-bad' })
  w.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 30 } })
  await until(() => w.isClosed(), 5000, 'close')
  t.equal(w.disconnectCode(), 0x82, 'server answers with DISCONNECT 0x82 Protocol Error')
  t.equal(w.all('disconnect')[0]?.properties?.sessionExpiryInterval, undefined, 'the server DISCONNECT carries no Session Expiry Interval [MQTT-3.14.2-2]')
  t.equal(b.app.broker.sessions.get('dexp-bad'), undefined, 'the session was not revived')
})

t.test('[MQTT-4.12.0-7] [MQTT-4.13.1-1] a v5 AUTH packet without enhanced authentication is refused with DISCONNECT', async (t) => {
  const b = await startBroker(t)
  const { wire: w } = await Wire.connect(t, b.port, 5, { clientId: 'auth-pkt' })
  w.send({ cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-1', authenticationData: Buffer.from('x') } })
  await until(() => w.isClosed(), 5000, 'close')
  const code = w.disconnectCode()
  t.ok(code === 0x82 || code === 0x8c, `DISCONNECT 0x82 or 0x8C (got ${code})`)
  t.equal(b.app.broker.stats.protocolErrors, 1)
})

t.test('[MQTT-4.12.0-1] [MQTT-3.2.2-6] CONNECT with an Authentication Method is refused with CONNACK 0x8C', async (t) => {
  const b = await startBroker(t)
  const w = await Wire.open(t, b.port, 5)
  const connack = await w.handshake({ clientId: 'auth-method', properties: { authenticationMethod: 'SCRAM-SHA-1' } })
  t.equal(connack.reasonCode, 0x8c, 'Bad authentication method')
  t.equal(connack.sessionPresent, false)
  await until(() => w.isClosed(), 5000, 'close after refusal')
  t.equal(b.app.broker.liveCount, 0)

  // MQTT.js sees the same refusal as an error carrying the reason code.
  const err = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'auth-method-js', properties: { authenticationMethod: 'SCRAM-SHA-1' } }).then(
    () => undefined,
    (e: unknown) => e as { code?: number },
  )
  t.equal(err?.code, 0x8c)
})

t.test('[MQTT-3.1.2-23] a v5 session expiry above limits.maxSessionExpiry is lowered and reported in CONNACK', async (t) => {
  const b = await startBroker(t, { limits: { maxSessionExpiry: 60 } })
  const { connack: high } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mse-high', clean: false, properties: { sessionExpiryInterval: 3600 } })
  t.equal(high.properties?.sessionExpiryInterval, 60, 'Session Expiry Interval 60 reported')
  t.equal(b.app.broker.sessions.get('mse-high')?.expiryInterval, 60, 'and used')
  const { connack: low } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'mse-low', clean: false, properties: { sessionExpiryInterval: 30 } })
  t.equal(low.properties?.sessionExpiryInterval, undefined, 'an acceptable interval is not echoed')
})
