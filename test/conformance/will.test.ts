import type { MqttClient } from 'mqtt'
import t from 'tap'
import { startBroker, type TestBroker } from '../helpers/broker.js'
import { mosquitto } from '../helpers/cli.js'
import { connectWithAck, type Received, sleep, until } from '../helpers/clients.js'
import { type ConnectFields, Wire } from '../helpers/raw-client.js'
import type { Version } from '../helpers/wire.js'

// Will messages: abnormal close, normal DISCONNECT, v5 DISCONNECT 0x04, will retain, v5 will
// delay and its interplay with reconnects and session expiry, will properties, takeover.

interface Teardown {
  teardown(fn: () => unknown): void
}

interface Watcher {
  client: MqttClient
  messages: Received[]
  /** Publishes `payload` on `topic` from another client and waits until the watcher has it. */
  sentinel(topic: string, payload?: string): Promise<void>
  payloads(): string[]
}

let seq = 0

/** A v5 subscriber on `filter` plus a publisher for sentinels. */
async function watch(t: Teardown, b: TestBroker, filter: string, qos: 0 | 1 | 2 = 1): Promise<Watcher> {
  const tag = `watch-${++seq}`
  const { client, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: `${tag}-sub` })
  await client.subscribeAsync(filter, { qos })
  const { client: pub } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: `${tag}-pub` })
  return {
    client,
    messages,
    async sentinel(topic, payload = `sentinel-${++seq}`) {
      await pub.publishAsync(topic, payload, { qos: 1 })
      await until(() => messages.some((m) => m.payload.toString() === payload), 5000, `sentinel ${payload}`)
    },
    payloads: () => messages.map((m) => m.payload.toString()),
  }
}

function willConnect(clientId: string, topic: string, payload: string, extra: Partial<ConnectFields> = {}, willExtra: Record<string, unknown> = {}): ConnectFields {
  return { clientId, will: { topic, payload: Buffer.from(payload), qos: 1, retain: false, ...willExtra }, ...extra }
}

/** Connects a v5 client, cuts its connection without DISCONNECT and waits until the broker has let it go. */
async function connectAndDrop(t: Teardown, b: TestBroker, connect: ConnectFields): Promise<void> {
  const { wire } = await Wire.connect(t, b.port, 5, connect)
  wire.socket.destroy()
  await until(() => !b.app.broker.hasLive(connect.clientId), 5000, 'released')
}

t.test('[MQTT-3.1.2-8] the will is published when the network connection closes without DISCONNECT (3.1, 3.1.1, 5.0)', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'will/abnormal/#', 2)
  const versions: Version[] = [3, 4, 5]
  for (const version of versions) {
    const { wire: w, connack } = await Wire.connect(t, b.port, version, willConnect(`abn-${version}`, `will/abnormal/${version}`, `gone-${version}`, {}, { qos: 2 }))
    t.equal(version === 5 ? connack.reasonCode : connack.returnCode, 0)
    w.socket.destroy()
    await until(() => watcher.payloads().includes(`gone-${version}`), 5000, `will of the v${version} client`)
    const m = watcher.messages.find((x) => x.payload.toString() === `gone-${version}`)
    t.equal(m?.topic, `will/abnormal/${version}`, `v${version}: will topic`)
    t.equal(m?.packet.qos, 2, `v${version}: will QoS 2 delivered at QoS 2`)
    t.equal(m?.packet.retain, false, `v${version}: not retained`)
  }
  t.equal(b.app.broker.stats.willsPublished, 3)
})

t.test('[MQTT-3.1.2-10] [MQTT-3.14.4-3] the will is discarded after a normal DISCONNECT (3.1.1 and 5.0 reason 0x00)', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'will/normal/#')
  for (const version of [4, 5] as const) {
    const { wire: w } = await Wire.connect(t, b.port, version, willConnect(`norm-${version}`, `will/normal/${version}`, `should-not-${version}`))
    w.send(version === 5 ? { cmd: 'disconnect', reasonCode: 0 } : { cmd: 'disconnect' })
    await until(() => w.isClosed(), 5000, 'server closes after DISCONNECT')
    await until(() => !b.app.broker.hasLive(`norm-${version}`), 5000, 'released')
    await watcher.sentinel(`will/normal/${version}`)
  }
  t.equal(watcher.payloads().filter((p) => p.startsWith('should-not')).length, 0, 'no will was published')
  t.equal(b.app.broker.stats.willsPublished, 0)
})

t.test('[MQTT-3.14.2-1] [MQTT-3.1.2-8] v5 DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'will/x04')
  const { wire: w } = await Wire.connect(t, b.port, 5, willConnect('x04', 'will/x04', 'asked-for'))
  w.send({ cmd: 'disconnect', reasonCode: 0x04 })
  await until(() => watcher.payloads().includes('asked-for'), 5000, 'will after 0x04')
  t.equal(b.app.broker.stats.willsPublished, 1)
  // MQTT.js sends the same reason code through end().
  const { client } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'x04-js', will: { topic: 'will/x04', payload: Buffer.from('js-asked'), qos: 1, retain: false } })
  await client.endAsync(false, { reasonCode: 0x04 })
  await until(() => watcher.payloads().includes('js-asked'), 5000, 'MQTT.js will after 0x04')
})

t.test('[MQTT-3.1.2-8] [MQTT-3.1.2-10] mosquitto_sub: will sent when it is killed, not when it disconnects normally', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'will/cli/#')
  const args = (id: string, topic: string, payload: string): string[] => [
    '-h',
    '127.0.0.1',
    '-p',
    String(b.port),
    '-V',
    'mqttv311',
    '-i',
    id,
    '-t',
    'will/unused',
    '--will-topic',
    topic,
    '--will-payload',
    payload,
    '--will-qos',
    '1',
  ]
  const killed = mosquitto(t, 'mosquitto_sub', args('cli-killed', 'will/cli/killed', 'cli-died'))
  await until(() => b.app.broker.sessions.get('cli-killed')?.subscriptions.has('will/unused') === true, 8000, 'mosquitto_sub subscribed')
  killed.kill('SIGKILL')
  await until(() => watcher.payloads().includes('cli-died'), 5000, 'will of the killed mosquitto_sub')

  const polite = mosquitto(t, 'mosquitto_sub', args('cli-polite', 'will/cli/polite', 'cli-polite-will'))
  await until(() => b.app.broker.sessions.get('cli-polite')?.subscriptions.has('will/unused') === true, 8000, 'mosquitto_sub subscribed')
  polite.kill('SIGINT') // mosquitto_sub disconnects cleanly on SIGINT
  await polite.done
  await until(() => !b.app.broker.hasLive('cli-polite'), 5000, 'released')
  await watcher.sentinel('will/cli/polite')
  t.notOk(watcher.payloads().includes('cli-polite-will'), 'no will after a clean mosquitto_sub exit')
})

t.test('[MQTT-3.1.2-14] [MQTT-3.1.2-15] (3.1.1: MQTT-3.1.2-16, MQTT-3.1.2-17) the will retain flag decides whether the will is stored as retained', async (t) => {
  const b = await startBroker(t)
  const live = await watch(t, b, 'wr/#')
  const { wire: kept } = await Wire.connect(t, b.port, 5, willConnect('wr-kept', 'wr/kept', 'retained-will', {}, { retain: true }))
  const { wire: plain } = await Wire.connect(t, b.port, 4, willConnect('wr-plain', 'wr/plain', 'plain-will', {}, { retain: false }))
  kept.socket.destroy()
  plain.socket.destroy()
  await until(() => live.payloads().includes('retained-will') && live.payloads().includes('plain-will'), 5000, 'both wills live')
  t.equal(live.messages.find((m) => m.payload.toString() === 'retained-will')?.packet.retain, false, 'live subscriber sees retain 0 (no Retain As Published) [MQTT-3.3.1-12]')

  const { client: setter } = await connectWithAck(t, b.url, { clientId: 'wr-setter' })
  await setter.publishAsync('wr/zz-sentinel', 'retained-sentinel', { qos: 1, retain: true })
  const { client: late, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, clientId: 'wr-late' })
  await late.subscribeAsync('wr/#', { qos: 1 })
  await until(() => messages.some((m) => m.payload.toString() === 'retained-sentinel'), 5000, 'retained sentinel')
  const kept2 = messages.find((m) => m.topic === 'wr/kept')
  t.equal(kept2?.payload.toString(), 'retained-will', 'the will with retain 1 was stored')
  t.equal(kept2?.packet.retain, true, 'and is sent with retain 1 to a new subscriber')
  t.notOk(
    messages.some((m) => m.topic === 'wr/plain'),
    'the will with retain 0 was not stored',
  )
})

t.test('[MQTT-3.1.3-9] v5 will delay 2 s (session expiry 10): not published at once, published after the delay', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'wd/#')
  await connectAndDrop(t, b, willConnect('wd-2', 'wd/two', 'delayed-will', { properties: { sessionExpiryInterval: 10 }, clean: false }, { properties: { willDelayInterval: 2 } }))
  await sleep(800)
  await watcher.sentinel('wd/sentinel')
  t.notOk(watcher.payloads().includes('delayed-will'), 'the will is held during its delay')
  await until(() => watcher.payloads().includes('delayed-will'), 6000, 'the delayed will')
  t.equal(b.app.broker.stats.willsPublished, 1)
  t.ok(b.app.broker.sessions.get('wd-2') !== undefined, 'the session outlives the will (expiry 10 s)')
})

t.test('[MQTT-3.1.3-9] reconnecting to the session before the will delay ends cancels the will', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'wc/#')
  await connectAndDrop(t, b, willConnect('wc', 'wc/will', 'cancelled-will', { clean: false, properties: { sessionExpiryInterval: 10 } }, { properties: { willDelayInterval: 2 } }))
  const { connack } = await Wire.connect(t, b.port, 5, { clientId: 'wc', clean: false, properties: { sessionExpiryInterval: 10 } })
  t.equal(connack.sessionPresent, true, 'reconnected to the same session')
  await sleep(3000)
  await watcher.sentinel('wc/will')
  t.notOk(watcher.payloads().includes('cancelled-will'), 'the will was not published')
  t.equal(b.app.broker.stats.willsPublished, 0)
})

t.test('[MQTT-3.1.2-8] [MQTT-3.1.3-9] a clean-start reconnect during the will delay ends the session, which publishes the will', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'wcs/#')
  await connectAndDrop(t, b, willConnect('wcs', 'wcs/will', 'session-ended-will', { clean: false, properties: { sessionExpiryInterval: 60 } }, { properties: { willDelayInterval: 30 } }))
  const { connack } = await Wire.connect(t, b.port, 5, { clientId: 'wcs', clean: true })
  t.equal(connack.sessionPresent, false, 'the old session was discarded')
  await until(() => watcher.payloads().includes('session-ended-will'), 5000, 'will published when its session ended')
})

t.test('[MQTT-3.1.3-9] [MQTT-3.1.2-8] a will delay longer than the session expiry publishes the will when the session expires', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'wx/#')
  const { wire: w } = await Wire.connect(
    t,
    b.port,
    5,
    willConnect('wx', 'wx/will', 'at-session-end', { clean: false, properties: { sessionExpiryInterval: 1 } }, { properties: { willDelayInterval: 30 } }),
  )
  w.socket.destroy()
  await until(() => watcher.payloads().includes('at-session-end'), 6000, 'will at session expiry')
  t.equal(b.app.broker.stats.sessionsExpired, 1, 'the session expired')
  t.equal(b.app.broker.sessions.get('wx'), undefined)

  // Session expiry 0: the session ends with the connection, so the will goes out at once.
  const { wire: w0 } = await Wire.connect(t, b.port, 5, willConnect('wx0', 'wx/zero', 'expiry-zero', {}, { properties: { willDelayInterval: 30 } }))
  w0.socket.destroy()
  await until(() => watcher.payloads().includes('expiry-zero'), 5000, 'will when a zero-expiry session ends')
})

t.test('[MQTT-3.3.2-4] [MQTT-3.3.2-6] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20] [MQTT-3.1.3-10] v5 will properties pass through to the subscriber', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'wp/#')
  const { messages: v4messages, client: v4 } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'wp-v4' })
  await v4.subscribeAsync('wp/#', { qos: 1 })
  const { wire: w } = await Wire.connect(
    t,
    b.port,
    5,
    willConnect(
      'wp',
      'wp/will',
      '{"state":"offline"}',
      {},
      {
        properties: {
          payloadFormatIndicator: true,
          contentType: 'application/json',
          responseTopic: 'wp/reply',
          correlationData: Buffer.from('corr-1'),
          messageExpiryInterval: 120,
          userProperties: { site: 'north', rack: '7', tag: ['b', 'a'] },
        },
      },
    ),
  )
  w.socket.destroy()
  await until(() => watcher.messages.length === 1, 5000, 'will with properties')
  const p = watcher.messages[0]?.packet.properties ?? {}
  t.equal(watcher.messages[0]?.payload.toString(), '{"state":"offline"}')
  t.equal(p.payloadFormatIndicator, true, 'Payload Format Indicator')
  t.equal(p.contentType, 'application/json', 'Content Type')
  t.equal(p.responseTopic, 'wp/reply', 'Response Topic')
  t.equal(p.correlationData?.toString(), 'corr-1', 'Correlation Data')
  t.same(p.userProperties, { site: 'north', rack: '7', tag: ['b', 'a'] }, 'User Properties')
  t.same(Object.keys(p.userProperties ?? {}), ['site', 'rack', 'tag'], 'in their original order [MQTT-3.1.3-10]')
  t.ok(p.messageExpiryInterval !== undefined && p.messageExpiryInterval > 0 && p.messageExpiryInterval <= 120, 'Message Expiry Interval forwarded, counted down')
  t.equal(p.topicAlias, undefined, 'no alias unless the client asked for them')
  // A 3.1.1 subscriber gets the same will, without properties.
  await until(() => v4messages.length === 1, 5000, 'will for the 3.1.1 subscriber')
  t.equal(v4messages[0]?.payload.toString(), '{"state":"offline"}')
})

t.test('[MQTT-3.1.4-3] [MQTT-3.1.2-8] will on session takeover', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'wt/#')

  // Will delay 0: the old network connection is closed, so its will is published.
  const { wire: a } = await Wire.connect(t, b.port, 5, willConnect('wt-a', 'wt/a', 'taken-over-a'))
  const { connack: ackA } = await Wire.connect(t, b.port, 5, { clientId: 'wt-a' })
  t.equal(ackA.reasonCode, 0)
  await until(() => a.isClosed(), 5000, 'old connection closed')
  t.equal(a.disconnectCode(), 0x8e)
  await until(() => watcher.payloads().includes('taken-over-a'), 5000, 'will of the taken-over connection')

  // Will delay 10 s and the new connection resumes the session: the will is not sent.
  const persistent = { clean: false, properties: { sessionExpiryInterval: 60 } }
  const { wire: bOld } = await Wire.connect(t, b.port, 5, willConnect('wt-b', 'wt/b', 'taken-over-b', persistent, { properties: { willDelayInterval: 10 } }))
  const { connack: ackB } = await Wire.connect(t, b.port, 5, { clientId: 'wt-b', ...persistent })
  t.equal(ackB.sessionPresent, true)
  await until(() => bOld.isClosed(), 5000, 'old connection closed')
  await watcher.sentinel('wt/b')
  t.notOk(watcher.payloads().includes('taken-over-b'), 'delayed will cancelled by the new connection to the session')

  // Will delay 10 s but the new connection starts clean: the old session ends, its will is sent.
  const { wire: cOld } = await Wire.connect(t, b.port, 5, willConnect('wt-c', 'wt/c', 'taken-over-c', persistent, { properties: { willDelayInterval: 10 } }))
  const { connack: ackC } = await Wire.connect(t, b.port, 5, { clientId: 'wt-c', clean: true })
  t.equal(ackC.sessionPresent, false)
  await until(() => cOld.isClosed(), 5000, 'old connection closed')
  await until(() => watcher.payloads().includes('taken-over-c'), 5000, 'will of the ended session')
})

t.test('[MQTT-3.1.2-8] the will is published when the server closes the connection for a protocol error or keepalive timeout', async (t) => {
  const b = await startBroker(t)
  const watcher = await watch(t, b, 'we/#')
  const { wire: bad } = await Wire.connect(t, b.port, 5, willConnect('we-bad', 'we/bad', 'protocol-error-will'))
  bad.sendBytes([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) // invalid packet type 15 flags / length
  await until(() => bad.isClosed(), 5000, 'closed for the malformed packet')
  t.equal(bad.disconnectCode(), 0x81, 'closed with DISCONNECT 0x81')
  await until(() => watcher.payloads().includes('protocol-error-will'), 5000, 'will after a protocol error')
  t.ok(watcher.payloads().includes('protocol-error-will'), 'will published after the protocol error')

  const { wire: idle } = await Wire.connect(t, b.port, 4, willConnect('we-idle', 'we/idle', 'keepalive-will', { keepalive: 1 }))
  await until(() => idle.isClosed(), 5000, 'closed for keepalive')
  await until(() => watcher.payloads().includes('keepalive-will'), 5000, 'will after a keepalive timeout')
  t.equal(b.app.broker.stats.keepaliveTimeouts, 1)
  t.equal(b.app.broker.stats.willsPublished, 2)
})
