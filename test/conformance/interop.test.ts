import t from 'tap'
import { startBroker, type TestBroker } from '../helpers/broker.js'
import { mosquitto, mosquittoPub, type RunningTool } from '../helpers/cli.js'
import { collect, connectClient, until } from '../helpers/clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const VERSIONS = [
  { flag: 'mqttv31', level: 3 },
  { flag: 'mqttv311', level: 4 },
  { flag: 'mqttv5', level: 5 },
] as const

/** mosquitto_sub with a client id, waited on until the broker holds its subscription. */
async function mosquittoSub(t: Teardown, b: TestBroker, id: string, filter: string, args: string[]): Promise<RunningTool> {
  const tool = mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-i', id, '-t', filter, '-W', '20', ...args], 25_000)
  await until(
    () => b.app.broker.hasLive(id) && b.app.broker.sessions.get(id)?.subscriptions.has(filter) === true,
    10_000,
    `mosquitto_sub ${id} subscribed to ${filter}`,
  )
  return tool
}

for (const v of VERSIONS) {
  t.test(`mosquitto_pub -> mosquitto_sub, ${v.flag}: QoS 0, 1 and 2 round trips [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1] [MQTT-3.8.4-6]`, async (t) => {
    const b = await startBroker(t)
    const id = `rt-${v.level}`
    const sub = await mosquittoSub(t, b, id, `rt/${v.flag}/#`, ['-V', v.flag, '-q', '2', '-C', '3', '-F', '%q %t %p'])
    t.equal(b.app.broker.sessions.get(id) !== undefined, true)
    for (const qos of [0, 1, 2]) {
      await mosquittoPub(t, b.port, ['-V', v.flag, '-i', `rt-pub-${v.level}-${qos}`, '-q', String(qos), '-t', `rt/${v.flag}/${qos}`, '-m', `hello ${v.flag} q${qos}`])
    }
    const r = await sub.done
    t.equal(r.code, 0, `mosquitto_sub got 3 messages and exited: ${r.stderr}`)
    t.same(r.stdout.trim().split('\n'), [
      `0 rt/${v.flag}/0 hello ${v.flag} q0`,
      `1 rt/${v.flag}/1 hello ${v.flag} q1`,
      `2 rt/${v.flag}/2 hello ${v.flag} q2`,
    ])
  })
}

t.test('mosquitto across protocol versions: each of 3.1, 3.1.1 and 5 subscribers gets what each version published [MQTT-4.3.2-1]', async (t) => {
  const b = await startBroker(t)
  const subs: RunningTool[] = []
  for (const v of VERSIONS) subs.push(await mosquittoSub(t, b, `cross-sub-${v.level}`, 'cross/#', ['-V', v.flag, '-q', '1', '-C', '3', '-v']))
  for (const v of VERSIONS) await mosquittoPub(t, b.port, ['-V', v.flag, '-q', '1', '-t', `cross/${v.flag}`, '-m', `from ${v.flag}`])
  for (const [i, sub] of subs.entries()) {
    const r = await sub.done
    t.equal(r.code, 0, `${VERSIONS[i]?.flag} subscriber exited: ${r.stderr}`)
    t.same(r.stdout.trim().split('\n'), ['cross/mqttv31 from mqttv31', 'cross/mqttv311 from mqttv311', 'cross/mqttv5 from mqttv5'], `${VERSIONS[i]?.flag} subscriber`)
  }
})

t.test('mosquitto_pub -D publish user-property passes through to mosquitto_sub -F %P and to MQTT.js v5; a 3.1.1 subscriber gets the message [MQTT-3.3.2-17] [MQTT-3.3.2-18]', async (t) => {
  const b = await startBroker(t)
  const mq = await connectClient(t, b.url, { protocolVersion: 5, clientId: 'up-mqttjs' })
  const got = collect(mq)
  await mq.subscribeAsync('props/#', { qos: 1 })
  const sub5 = await mosquittoSub(t, b, 'up-sub5', 'props/#', ['-V', 'mqttv5', '-q', '1', '-C', '1', '-F', '%t %p %P'])
  const sub4 = await mosquittoSub(t, b, 'up-sub4', 'props/#', ['-V', 'mqttv311', '-q', '1', '-C', '1', '-F', '%t %p'])
  await mosquittoPub(t, b.port, [
    '-V',
    'mqttv5',
    '-q',
    '1',
    '-t',
    'props/up',
    '-m',
    'with props',
    '-D',
    'publish',
    'user-property',
    'a',
    'b',
    '-D',
    'publish',
    'user-property',
    'c',
    'd',
    '-D',
    'publish',
    'content-type',
    'text/x-test',
    '-D',
    'publish',
    'response-topic',
    'props/reply',
    '-D',
    'publish',
    'correlation-data',
    'corr-1',
    '-D',
    'publish',
    'message-expiry-interval',
    '3600',
  ])
  const r5 = await sub5.done
  t.equal(r5.code, 0, r5.stderr)
  t.equal(r5.stdout, 'props/up with props a:b c:d\n', 'user properties in order')
  const r4 = await sub4.done
  t.equal(r4.code, 0, r4.stderr)
  t.equal(r4.stdout, 'props/up with props\n')
  await until(() => got.length === 1)
  const props = got[0]?.packet.properties
  t.same(props?.userProperties, { a: 'b', c: 'd' })
  t.equal(props?.contentType, 'text/x-test')
  t.equal(props?.responseTopic, 'props/reply')
  t.equal(props?.correlationData?.toString(), 'corr-1')
  t.ok((props?.messageExpiryInterval ?? 0) > 0 && (props?.messageExpiryInterval ?? 0) <= 3600, 'message expiry forwarded')
})

t.test('MQTT.js v5 user properties reach mosquitto_sub -F %P [MQTT-3.3.2-17]', async (t) => {
  const b = await startBroker(t)
  const sub = await mosquittoSub(t, b, 'up-rev', 'rev/#', ['-V', 'mqttv5', '-C', '1', '-F', '%t %p %P'])
  const pub = await connectClient(t, b.url, { protocolVersion: 5, clientId: 'up-rev-pub' })
  await pub.publishAsync('rev/x', 'from mqtt.js', { qos: 1, properties: { userProperties: { k1: 'v1', k2: ['v2', 'v3'] } } })
  const r = await sub.done
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'rev/x from mqtt.js k1:v1 k2:v2 k2:v3\n')
})

for (const v of VERSIONS) {
  t.test(`retained with mosquitto_pub -r / mosquitto_sub, ${v.flag}: sent on subscribe with RETAIN=1, live with RETAIN=0 [MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-9]`, async (t) => {
    const b = await startBroker(t)
    await mosquittoPub(t, b.port, ['-V', v.flag, '-q', '1', '-r', '-t', `ret/${v.flag}`, '-m', 'old'])
    await mosquittoPub(t, b.port, ['-V', v.flag, '-q', '1', '-r', '-t', `ret/${v.flag}`, '-m', 'kept'])
    const sub = await mosquittoSub(t, b, `ret-sub-${v.level}`, 'ret/#', ['-V', v.flag, '-q', '1', '-C', '2', '-F', '%r %t %p'])
    await mosquittoPub(t, b.port, ['-V', v.flag, '-q', '1', '-r', '-t', `ret/${v.flag}`, '-m', 'live'])
    const r = await sub.done
    t.equal(r.code, 0, r.stderr)
    t.same(r.stdout.trim().split('\n'), [`1 ret/${v.flag} kept`, `0 ret/${v.flag} live`])
  })
}

for (const v of VERSIONS) {
  t.test(`mosquitto_sub -c -i id -q 1 (${v.flag}) persistent session receives what was sent while it was offline, in order [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-4.6.0-5] [MQTT-3.2.2-2]`, async (t) => {
    const b = await startBroker(t)
    const id = `persist-${v.level}`
    const session = v.flag === 'mqttv5' ? ['-c', '-x', '300'] : ['-c']
    const args = ['-V', v.flag, '-q', '1', '-F', '%q %t %p', ...session]
    const first = await mosquittoSub(t, b, id, 'ps/#', [...args, '-C', '1'])
    await mosquittoPub(t, b.port, ['-V', v.flag, '-q', '1', '-t', 'ps/a', '-m', 'online'])
    const r1 = await first.done
    t.equal(r1.code, 0, r1.stderr)
    t.equal(r1.stdout, '1 ps/a online\n')
    await until(() => !b.app.broker.hasLive(id), 5000, 'mosquitto_sub disconnected')
    t.ok(b.app.broker.sessions.get(id)?.subscriptions.has('ps/#'), 'the session and its subscription outlive the connection')

    for (let i = 1; i <= 3; i++) await mosquittoPub(t, b.port, ['-V', 'mqttv311', '-q', i === 2 ? '2' : '1', '-t', `ps/${i}`, '-m', `offline ${i}`])
    // QoS 0 is not queued for an offline client (as in Mosquitto).
    await mosquittoPub(t, b.port, ['-V', 'mqttv311', '-q', '0', '-t', 'ps/q0', '-m', 'offline q0'])

    const second = mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-i', id, '-t', 'ps/#', '-W', '20', ...args, '-C', '4'], 25_000)
    await until(() => second.lines().length === 3, 10_000, 'the 3 queued messages')
    await mosquittoPub(t, b.port, ['-V', v.flag, '-q', '1', '-t', 'ps/sentinel', '-m', 'sentinel'])
    const r2 = await second.done
    t.equal(r2.code, 0, r2.stderr)
    t.same(r2.stdout.trim().split('\n'), ['1 ps/1 offline 1', '1 ps/2 offline 2', '1 ps/3 offline 3', '1 ps/sentinel sentinel'], 'queued QoS 1/2 messages at the granted QoS 1, then the live one')
  })
}

t.test('mosquitto_sub without -c starts clean: nothing queued from a previous persistent session [MQTT-3.1.2-4] [MQTT-3.1.2-6]', async (t) => {
  const b = await startBroker(t)
  const first = await mosquittoSub(t, b, 'clean-sub', 'cl/#', ['-q', '1', '-c', '-C', '1'])
  await mosquittoPub(t, b.port, ['-q', '1', '-t', 'cl/a', '-m', 'one'])
  t.equal((await first.done).code, 0)
  await until(() => !b.app.broker.hasLive('clean-sub'))
  await mosquittoPub(t, b.port, ['-q', '1', '-t', 'cl/b', '-m', 'queued'])
  t.equal(b.app.broker.sessions.get('clean-sub')?.queued, 1, 'one message queued for the offline session')
  const second = await mosquittoSub(t, b, 'clean-sub', 'cl/#', ['-q', '1', '-C', '1', '-F', '%t %p'])
  await mosquittoPub(t, b.port, ['-q', '1', '-t', 'cl/sentinel', '-m', 'sentinel'])
  const r = await second.done
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, 'cl/sentinel sentinel\n', 'the clean session discarded the queued message')
})
