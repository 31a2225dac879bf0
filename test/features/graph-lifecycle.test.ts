// What happens to graphs when their devices change: a re-registration that drops a feature drops
// the links to it, a removed device takes its links along, detach removes a graph, and a graph
// with several inputs joins the latest value of each.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { digestOf } from '../../src/features/compile.js'
import { startAccountsBroker } from '../helpers/accounts.js'
import { collect, connectClient, until } from '../helpers/clients.js'
import { DeviceApp, devicesRequest } from '../helpers/device-app.js'
import { graphBroker, request } from '../helpers/graphs.js'

t.setTimeout(90_000)

const SUM = 'function run(a, b) { return a + b }\n'

t.test('a join over two inputs, then devices that change under the graph', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const where = { url: b.url, httpPort }
  const login = { username: 'A', password: 'pw-A' }
  const tensId = randomUUID()
  const onesId = randomUUID()
  const sinkId = randomUUID()
  const tens = await DeviceApp.start(t, where, login, tensId, { name: 'Tens', idf_list: ['v'] }, () => 10)
  await DeviceApp.start(t, where, login, onesId, { name: 'Ones', idf_list: ['v'] }, () => 1)
  const sink = await DeviceApp.start(t, where, login, sinkId, { name: 'Sink', odf_list: ['sum', 'other'] })
  const G = '/A/graph/sum'
  t.match(await request(admin, G, { op: 'add_funcs', codes: [SUM], digests: [digestOf(SUM)] }), { state: 'ok' })
  t.match(await request(admin, G, { op: 'set_join', prev: null, new: digestOf(SUM) }), { state: 'ok' })
  for (const id of [tensId, onesId]) t.match(await request(admin, G, { op: 'add_link', da_id: id, idf: 'v', func: null }), { state: 'ok' })
  t.match(await request(admin, G, { op: 'add_link', da_id: sinkId, odf: 'sum', func: null }), { state: 'ok' })
  await sink.waitFor('sums', (a) => a.received.length >= 5)
  t.same([...new Set(sink.received.map(([, p]) => p))], ['11'], 'the join adds the latest value of each input')

  // The sink registers again without "sum": the link to it goes, the graph stops, CONNECT stays unanswered.
  const again = await devicesRequest(httpPort, 'PUT', `/devices/${sinkId}`, { user: 'A', password: 'pw-A', body: { name: 'Sink', odf_list: ['other'] } })
  t.equal(again.status, 200)
  t.same(again.body.dropped_links, [{ graph: 'A/sum', odf: 'sum' }], 'the answer lists the links dropped with the feature')
  t.not(again.body.rev, sink.registration.rev, 'a new registration has a new rev')
  t.match(await request(admin, G, { op: 'list' }), { state: 'ok', runs: false }, 'without an output the graph no longer runs')
  t.equal(b.app.rules?.engine.rule('A', 'graph.sum'), undefined, "and its rule is gone from the account's sandbox")

  // A device removed: its links go with it.
  t.match(await request(admin, `/A/devices/delete/${tensId}`, {}), { state: 'ok', removed_links: 1 })
  t.same(
    b.app.graphs?.store.links('A', 'sum').map((l) => l.device),
    [onesId],
    'only the link of the device that is left remains',
  )
  tens.kill()

  // detach removes the graph, and its last features get DISCONNECT.
  t.match(await request(admin, G, { op: 'detach' }), { state: 'ok' })
  t.equal(b.app.graphs?.store.graph('A', 'sum'), undefined, 'the graph is gone')
  t.match(await request(admin, G, { op: 'list' }), { state: 'error', error: /no graph "sum"/ })
  const listed = await request(admin, '/A/graphs/list', {})
  t.same(listed.graphs, [], '/A/graphs/list lists no graph')
})

t.test('two graphs of one account share a feature: DISCONNECT only when the last link to it goes', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const where = { url: b.url, httpPort }
  const login = { username: 'A', password: 'pw-A' }
  const srcId = randomUUID()
  const src = await DeviceApp.start(t, where, login, srcId, { name: 'Source', idf_list: ['v'] }, () => 2)
  const one = await DeviceApp.start(t, where, login, randomUUID(), { name: 'One', odf_list: ['v'] })
  const two = await DeviceApp.start(t, where, login, randomUUID(), { name: 'Two', odf_list: ['v'] })
  for (const [g, sink] of [
    ['first', one],
    ['second', two],
  ] as const) {
    t.match(await request(admin, `/A/graph/${g}`, { op: 'add_link', da_id: srcId, idf: 'v', func: null }), { state: 'ok' })
    t.match(await request(admin, `/A/graph/${g}`, { op: 'add_link', da_id: sink.id, odf: 'v', func: null }), { state: 'ok' })
  }
  await one.waitFor('data', (a) => a.received.length > 0)
  await two.waitFor('data', (a) => a.received.length > 0)
  t.equal(src.signals.filter((s) => s.command === 'CONNECT').length, 1, 'the shared feature got one CONNECT')
  const listed = await request(admin, '/A/graph/first', { op: 'list' })
  t.match(listed, { links: [{ da_id: srcId, signal: { command: 'CONNECT', state: 'ok' } }, { signal: { command: 'CONNECT', state: 'ok' } }] }, "list shows each feature's last signal and the device's answer")
  t.match(await request(admin, '/A/graph/first', { op: 'rm_link', da_id: srcId, idf: 'v' }), { state: 'ok' })
  t.match(await request(admin, '/A/graph/first', { op: 'list' }), { state: 'ok' })
  t.equal(src.signals.filter((s) => s.command === 'DISCONNECT').length, 0, 'no DISCONNECT while the other graph still uses the feature')
  const before = two.received.length
  await two.waitFor('data still', (a) => a.received.length > before + 2)
  t.pass('the other graph keeps running')
  t.match(await request(admin, '/A/graph/second', { op: 'rm_link', da_id: srcId, idf: 'v' }), { state: 'ok' })
  await src.waitFor('DISCONNECT', (a) => a.signals.some((s) => s.command === 'DISCONNECT'))
  t.pass('DISCONNECT once the last link to it is gone')
  const graphs = (await request(admin, '/A/graphs/list', {})).graphs as { graph: string }[]
  t.same(graphs.map((g) => g.graph), ['first', 'second'], '/A/graphs/list lists both graphs')
})

t.test('a payload that is not JSON reaches the functions as a string; a function returning undefined stops the value', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const where = { url: b.url, httpPort }
  const login = { username: 'A', password: 'pw-A' }
  const srcId = randomUUID()
  // Its own readings are all -1: the function stops every one of them.
  await DeviceApp.start(t, where, login, srcId, { name: 'Quiet source', idf_list: ['v'] }, () => -1)
  const sink = await DeviceApp.start(t, where, login, randomUUID(), { name: 'Sink', odf_list: ['v'] })
  const describe = 'function run(x) { return typeof x === "number" && x < 0 ? undefined : [typeof x, x] }\n'
  t.match(await request(admin, '/A/graph/t', { op: 'add_funcs', codes: [describe], digests: [digestOf(describe)] }), { state: 'ok' })
  t.match(await request(admin, '/A/graph/t', { op: 'add_link', da_id: srcId, idf: 'v', func: digestOf(describe) }), { state: 'ok' })
  t.match(await request(admin, '/A/graph/t', { op: 'add_link', da_id: sink.id, odf: 'v', func: null }), { state: 'ok' })
  await sink.waitFor('CONNECT', (a) => a.signals.some((s) => s.command === 'CONNECT'))
  const input = `/A/devices/${srcId}/idf/v`
  for (const payload of ['hello', '-1', '{"t": 21}', '7']) await admin.publishAsync(input, payload, { qos: 1 })
  await sink.waitFor('three outputs', (a) => a.received.length >= 3)
  t.same(
    sink.received.map(([, p]) => JSON.parse(p)),
    [
      ['string', 'hello'],
      ['object', { t: 21 }],
      ['number', 7],
    ],
    'not JSON: a string; JSON: its value; -1 was stopped by the function returning undefined',
  )
})

t.test('a damaged features.db: perch starts without graphs, says why, and serves', async (t) => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dataDir = mkdtempSync(join(tmpdir(), 'perch-graphs-damaged-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  writeFileSync(join(dataDir, 'features.db'), Buffer.alloc(8192, 7))
  const b = await startAccountsBroker(t, { rules: { enabled: true }, graphs: { enabled: true }, http: { port: 0, host: '127.0.0.1' } }, { dataDir })
  t.equal(b.app.graphs, undefined, 'no graphs')
  const failed = b.logs.find((l) => l.event === 'graphs.start-failed')
  t.match(String(failed?.error), /features\.db/, `the log names the file: ${String(failed?.error)}`)
  await b.addAccount('A', 'pw-A')
  const r = await devicesRequest(b.app.metrics?.port ?? 0, 'PUT', `/devices/${randomUUID()}`, { user: 'A', password: 'pw-A', body: { name: 'x', idf_list: ['v'] } })
  t.equal(r.status, 503, '/devices answers 503')
  t.match(r.body.error, /registered devices and graphs did not start: .*features\.db/, 'with the reason')
  const client = await connectClient(t, b.url, { username: 'A', password: 'pw-A', protocolVersion: 5 })
  const got = collect(client)
  await client.subscribeAsync('/A/x', { qos: 1 })
  await client.publishAsync('/A/x', 'still here', { qos: 1 })
  await until(() => got.length === 1, 5000, 'a message')
  t.pass('the broker serves')
})
