// The IoTtalk walk-through against perch, end to end with real clients: two device applications
// (MQTT.js) register over HTTP, go online, and a graph links the input feature of one through
// an IDF function and a join function to the output feature of the other.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { digestOf } from '../../src/features/compile.js'
import { startAccountsBroker } from '../helpers/accounts.js'
import { collect, connectClient, until } from '../helpers/clients.js'
import { DeviceApp } from '../helpers/device-app.js'
import { graphBroker, IDF_FUNC, JOIN_FUNC, request } from '../helpers/graphs.js'

t.setTimeout(90_000)

t.test('two device applications linked by a graph: data flows through the functions, a killed device goes offline and comes back, a removed link stops the data', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const where = { url: b.url, httpPort }
  const login = { username: 'A', password: 'pw-A' }
  // Presence is visible to the account (perch's retained record) and to rules.
  const watcher = await connectClient(t, b.url, { username: 'A', password: 'pw-A', protocolVersion: 5 })
  const seen = collect(watcher)
  await watcher.subscribeAsync(['/A/devices/+/state', '/A/presence-seen/#', '/A/graph/+/error'], { qos: 1 })
  const pushed = await request(admin, '/A/scripts/put/presence', {
    source: "export function onMessage(m) { const s = JSON.parse(m.payload); publish('presence-seen/' + m.topic.split('/')[3], s.state) }",
    manifest: { triggers: { topics: ['devices/+/state'] } },
  })
  t.equal(pushed.ok, true, `a rule on devices/+/state is pushed: ${JSON.stringify(pushed)}`)

  let value = 0
  const betaCatId = randomUUID()
  const betaCat = await DeviceApp.start(t, where, login, betaCatId, { name: 'BetaCat', idf_list: [['meow', ['dB']]], accept_protos: ['mqtt'], profile: { model: 'AI' } }, () => {
    value += 1
    return value + 0.7
  })
  t.match(betaCat.registration, { state: 'ok', id: betaCatId, ctrl_chans: [`/A/devices/${betaCatId}/ctrl/up`, `/A/devices/${betaCatId}/ctrl/down`] }, 'the answer names the control channels')
  t.equal(betaCat.registration.topics.idf.meow, `/A/devices/${betaCatId}/idf/meow`, 'and the data topic of the feature')
  t.type(betaCat.registration.rev, 'string', 'and a revision token')
  const lampId = randomUUID()
  const lamp = await DeviceApp.start(t, where, login, lampId, { name: 'Lamp', odf_list: [['luma', ['lux']]] })
  await until(() => b.app.graphs?.store.device(betaCatId)?.presence === 'online' && b.app.graphs?.store.device(lampId)?.presence === 'online', 5000, 'both devices online')
  await until(() => seen.some((m) => m.topic === `/A/presence-seen/${betaCatId}` && m.payload.toString() === 'online'), 5000, 'the rule saw BetaCat online')
  t.pass('both devices are online; a rule triggered by devices/+/state saw it')

  // The reference's api.sh, over MQTT.
  const G = '/A/graph/1'
  t.match(await request(admin, G, { op: 'attach' }), { state: 'ok' })
  const added = await request(admin, G, { op: 'add_funcs', codes: [IDF_FUNC, JOIN_FUNC], digests: [digestOf(IDF_FUNC), digestOf(JOIN_FUNC)] })
  t.match(added, { state: 'ok', digests: [digestOf(IDF_FUNC), digestOf(JOIN_FUNC)] }, 'add_funcs verifies the digests and stores the functions')
  t.match(await request(admin, G, { op: 'add_link', da_id: betaCatId, idf: 'meow', func: digestOf(IDF_FUNC) }), { state: 'ok', topic: `/A/devices/${betaCatId}/idf/meow` })
  await betaCat.waitFor('CONNECT meow', (a) => a.signals.some((s) => s.command === 'CONNECT' && s.idf === 'meow' && s.topic === `/A/devices/${betaCatId}/idf/meow`))
  t.pass('CONNECT with the data topic reached BetaCat')
  // The join before the output link, so that every value the lamp gets went through both functions.
  t.match(await request(admin, G, { op: 'set_join', prev: null, new: digestOf(JOIN_FUNC) }), { state: 'ok', join: digestOf(JOIN_FUNC) })
  t.match(await request(admin, G, { op: 'add_link', da_id: lampId, odf: 'luma', func: null }), { state: 'ok' })
  await lamp.waitFor('CONNECT luma', (a) => a.signals.some((s) => s.command === 'CONNECT' && s.odf === 'luma'))

  await lamp.waitFor('transformed data', (a) => a.received.length >= 5)
  const values = lamp.received.map(([, p]) => Number(p))
  t.ok(
    values.every((v) => Number.isInteger(Math.sqrt(v)) && v > 0),
    `the lamp receives int(x) ** 2 of BetaCat's readings (${values.slice(0, 5).join(', ')}, ...)`,
  )
  await until(() => b.app.graphs?.store.signals(betaCatId).some((s) => s.feature === 'meow' && s.state === 'ok') === true, 5000, 'the reply is recorded')
  t.pass("BetaCat's answer to CONNECT (state ok) is recorded")
  const listed = await request(admin, G, { op: 'list' })
  t.match(listed, { state: 'ok', join: digestOf(JOIN_FUNC), runs: true, links: [{ da_id: betaCatId, idf: 'meow', func: digestOf(IDF_FUNC) }, { da_id: lampId, odf: 'luma', func: null }] }, 'list shows the graph')

  // The device's connection dies: its will marks it offline; it comes back and data flows again.
  betaCat.kill()
  await until(() => b.app.graphs?.store.device(betaCatId)?.presence === 'offline', 5000, 'BetaCat offline')
  await until(() => seen.some((m) => m.topic === `/A/devices/${betaCatId}/state` && JSON.parse(m.payload.toString()).state === 'offline'), 5000, 'state offline published')
  t.pass("the will marked BetaCat offline, on perch's retained state topic too")
  await until(() => seen.some((m) => m.topic === `/A/presence-seen/${betaCatId}` && m.payload.toString() === 'offline'), 5000, 'the rule saw it offline')
  const before = lamp.received.length
  await betaCat.connect()
  await betaCat.waitFor('CONNECT again', (a) => a.signals.filter((s) => s.command === 'CONNECT').length >= 2)
  await lamp.waitFor('data again', (a) => a.received.length >= before + 3)
  t.equal(b.app.graphs?.store.device(betaCatId)?.presence, 'online', 'back online: CONNECT again and data flows again')

  // A stale revision (an older registration's will) is ignored.
  await admin.publishAsync(betaCat.uplink, JSON.stringify({ state: 'offline', rev: 'an-old-rev' }), { qos: 1 })
  t.match(await request(admin, G, { op: 'list' }), { state: 'ok' })
  t.equal(b.app.graphs?.store.device(betaCatId)?.presence, 'online', 'a presence message with a stale rev changes nothing')

  // Removing the IDF link: DISCONNECT reaches BetaCat and the data stops.
  t.match(await request(admin, G, { op: 'rm_link', da_id: betaCatId, idf: 'meow' }), { state: 'ok' })
  await betaCat.waitFor('DISCONNECT', (a) => a.signals.some((s) => s.command === 'DISCONNECT' && s.idf === 'meow'))
  await until(() => !betaCat.sending('meow'), 2000, 'BetaCat stopped sending')
  const stopped = lamp.received.length
  await new Promise((r) => setTimeout(r, 300))
  t.equal(lamp.received.length, stopped, 'no more data reaches the lamp once the link is gone')
  t.match(await request(admin, G, { op: 'list' }), { runs: false, links: [{ da_id: lampId, odf: 'luma' }] })
  t.same(seen.filter((m) => m.topic === '/A/graph/1/error').map((m) => m.payload.toString()), [], 'the graph never failed')
  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()
  t.match(metrics, /perch_registered_devices\{account="A",presence="online"\} 2/, '/metrics counts the registered devices online')
  t.match(metrics, /perch_graph_links\{account="A"\} 1/, 'and the links')
  t.match(metrics, /perch_presence_stale_total 1/, 'and the stale presence message')
})

t.test('graphs come back after a restart, running', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dataDir = mkdtempSync(join(tmpdir(), 'perch-graphs-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const overrides = { rules: { enabled: true }, graphs: { enabled: true }, http: { port: 0, host: '127.0.0.1' } }
  const sourceId = randomUUID()
  const sinkId = randomUUID()
  {
    const b = await startAccountsBroker(t, overrides, { dataDir })
    await b.addAccount('A', 'pw-A')
    const admin = await connectClient(t, b.url, { username: 'A', password: 'pw-A', protocolVersion: 5 })
    const where = { url: b.url, httpPort: b.app.metrics?.port ?? 0 }
    const src = await DeviceApp.start(t, where, { username: 'A', password: 'pw-A' }, sourceId, { name: 'Source', idf_list: ['n'] }, () => 3)
    const sink = await DeviceApp.start(t, where, { username: 'A', password: 'pw-A' }, sinkId, { name: 'Sink', odf_list: ['n'] })
    await request(admin, '/A/graph/g', { op: 'add_funcs', codes: [JOIN_FUNC], digests: [digestOf(JOIN_FUNC)] })
    await request(admin, '/A/graph/g', { op: 'add_link', da_id: sourceId, idf: 'n', func: digestOf(JOIN_FUNC) })
    t.match(await request(admin, '/A/graph/g', { op: 'add_link', da_id: sinkId, odf: 'n', func: null }), { state: 'ok' })
    await sink.waitFor('data', (a) => a.received.length > 0)
    src.kill()
    sink.kill()
    await admin.endAsync()
    await b.stop()
  }
  const b = await startAccountsBroker(t, overrides, { dataDir })
  const where = { url: b.url, httpPort: b.app.metrics?.port ?? 0 }
  t.equal(b.app.graphs?.store.device(sourceId)?.presence, 'offline', 'after a restart every device starts offline')
  // The same devices come back: each registers again (a new rev) and goes online.
  const src = await DeviceApp.start(t, where, { username: 'A', password: 'pw-A' }, sourceId, { name: 'Source', idf_list: ['n'] }, () => 3)
  const sink = await DeviceApp.start(t, where, { username: 'A', password: 'pw-A' }, sinkId, { name: 'Sink', odf_list: ['n'] })
  await src.waitFor('CONNECT after the restart', (a) => a.signals.some((s) => s.command === 'CONNECT'))
  await sink.waitFor('data after the restart', (a) => a.received.length > 0)
  t.equal(sink.received[0]?.[1], '9', 'the stored graph runs again: 3 ** 2')
})
