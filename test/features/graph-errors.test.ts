// Bad graph requests: each is answered with a clear error on <topic>/result, and the graph,
// the functions and the links are what they were before.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { digestOf } from '../../src/features/compile.js'
import { LIMITS } from '../../src/features/model.js'
import { collect, connectClient, until } from '../helpers/clients.js'
import { DeviceApp, devicesRequest } from '../helpers/device-app.js'
import { graphBroker, IDF_FUNC, JOIN_FUNC, request } from '../helpers/graphs.js'

t.setTimeout(90_000)

const G = '/A/graph/bad'

t.test('bad graph requests change nothing', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const where = { url: b.url, httpPort }
  const login = { username: 'A', password: 'pw-A' }
  const srcId = randomUUID()
  const sinkId = randomUUID()
  const src = await DeviceApp.start(t, where, login, srcId, { name: 'Source', idf_list: [['temp', ['C']]] }, () => 21)
  await DeviceApp.start(t, where, login, sinkId, { name: 'Sink', odf_list: [['display', ['C']]] })
  t.match(await request(admin, G, { op: 'add_funcs', codes: [IDF_FUNC], digests: [digestOf(IDF_FUNC)] }), { state: 'ok' })
  t.match(await request(admin, G, { op: 'add_link', da_id: srcId, idf: 'temp', func: digestOf(IDF_FUNC) }), { state: 'ok' })
  const store = b.app.graphs?.store
  if (store === undefined) throw new Error('graphs are not running')
  const snapshot = () => ({ graphs: store.graphs('A'), links: store.links('A'), funcs: store.functions('A').map((f) => f.digest) })
  const before = snapshot()

  const expectError = async (what: string, body: Record<string, unknown>, message: RegExp, topic = G): Promise<Record<string, unknown>> => {
    const answer = await request(admin, topic, body)
    t.equal(answer.state, 'error', `${what}: answered with an error`)
    t.match(String(answer.error), message, `${what}: ${String(answer.error)}`)
    t.same(snapshot(), before, `${what}: nothing changed`)
    return answer
  }

  const unknown = randomUUID()
  await expectError('an unknown device', { op: 'add_link', da_id: unknown, idf: 'temp', func: null }, new RegExp(`no device ${unknown}`))
  await expectError('a device id that is not a UUID', { op: 'add_link', da_id: 'BetaCat', idf: 'temp', func: null }, /"da_id" must be a device id/)
  await expectError('a feature the device does not have', { op: 'add_link', da_id: srcId, idf: 'humidity', func: null }, /has no idf "humidity"/)
  await expectError('an output feature named as an input', { op: 'add_link', da_id: sinkId, idf: 'display', func: null }, /has no idf "display"/)
  await expectError('a function that was never added', { op: 'add_link', da_id: sinkId, odf: 'display', func: digestOf('function run(x) { return x }') }, /add it with add_funcs first/)
  await expectError('a digest that does not match its code', { op: 'add_funcs', codes: [JOIN_FUNC], digests: [digestOf(IDF_FUNC)] }, new RegExp(`the SHA-256 of codes\\[0\\] is ${digestOf(JOIN_FUNC)}`))
  await expectError('a digest that is not hex', { op: 'add_funcs', codes: [JOIN_FUNC], digests: ['abc'] }, /SHA-256 digest in lower-case hex/)
  await expectError('codes and digests of different lengths', { op: 'add_funcs', codes: [JOIN_FUNC, IDF_FUNC], digests: [digestOf(JOIN_FUNC)] }, /same, non-zero length/)
  const broken = 'function run(x) {\n  return x +* 2\n}\n'
  const syntax = await expectError('a function with a syntax error', { op: 'add_funcs', codes: [broken], digests: [digestOf(broken)] }, /SyntaxError|unexpected|expecting/i)
  t.equal(syntax.line, 2, 'the syntax error names its line in the code')
  const noRun = 'function handle(x) { return x }\n'
  await expectError('code that defines no run()', { op: 'add_funcs', codes: [noRun], digests: [digestOf(noRun)] }, /must define a function run/)
  // One bad function in a batch keeps the good ones out too.
  await expectError('a good function with a bad one', { op: 'add_funcs', codes: [JOIN_FUNC, broken], digests: [digestOf(JOIN_FUNC), digestOf(broken)] }, /codes\[1\]/)
  const hang = 'while (true) {}\nfunction run(x) { return x }\n'
  await expectError('a function whose top level loops forever (the sandbox time limit stops it)', { op: 'add_funcs', codes: [hang], digests: [digestOf(hang)] }, /time|interrupted|limit/i)
  await expectError('set_join with a stale "prev"', { op: 'set_join', prev: digestOf(IDF_FUNC), new: null }, /is null, not/)
  await expectError('rm_link of a link that does not exist', { op: 'rm_link', da_id: sinkId, odf: 'display' }, /has no link/)
  await expectError('an unknown op', { op: 'explode' }, /unknown op "explode"/)
  await expectError('a graph name with a character it may not have', { op: 'list' }, /graph name "a%b"/, '/A/graph/a%b')
  const notJson = new Promise<string>((resolve) => {
    admin.on('message', (topic, payload) => {
      if (topic === `${G}/result` && payload.toString().includes('JSON object')) resolve(payload.toString())
    })
  })
  await admin.publishAsync(G, 'add_link please', { qos: 1 })
  t.match(await notJson, /a graph request is a JSON object/, 'a request that is not JSON is answered with an error')
  t.same(snapshot(), before, 'and changes nothing')
  t.ok(src.signals.every((s) => s.command === 'CONNECT'), 'no signal went out for a refused request')
})

t.test('a function that loops forever on each value is stopped by the time limit; the error is published and the broker keeps serving', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const where = { url: b.url, httpPort }
  const login = { username: 'A', password: 'pw-A' }
  const srcId = randomUUID()
  const sinkId = randomUUID()
  await DeviceApp.start(t, where, login, srcId, { name: 'Source', idf_list: ['n'] }, () => 1)
  const sink = await DeviceApp.start(t, where, login, sinkId, { name: 'Sink', odf_list: ['n'] })
  const errors = collect(admin)
  await admin.subscribeAsync(`${G}/error`, { qos: 0 })
  const spin = 'function run(x) { for (;;) {} }\n'
  t.match(await request(admin, G, { op: 'add_funcs', codes: [spin], digests: [digestOf(spin)] }), { state: 'ok' }, 'the function loads: only a call loops')
  t.match(await request(admin, G, { op: 'add_link', da_id: srcId, idf: 'n', func: digestOf(spin) }), { state: 'ok' })
  t.match(await request(admin, G, { op: 'add_link', da_id: sinkId, odf: 'n', func: null }), { state: 'ok' })
  await until(() => errors.some((m) => m.topic === `${G}/error`), 10_000, 'an error on the graph error topic')
  const first = JSON.parse(errors.find((m) => m.topic === `${G}/error`)?.payload.toString() ?? '{}') as Record<string, unknown>
  t.equal(first.code, 'timeout', `the call was stopped by the time limit: ${JSON.stringify(first)}`)
  t.equal(sink.received.length, 0, 'nothing reached the output')
  const probe = await connectClient(t, b.url, { username: 'A', password: 'pw-A', protocolVersion: 5 })
  const got = collect(probe)
  await probe.subscribeAsync('/A/ping', { qos: 1 })
  await probe.publishAsync('/A/ping', 'pong', { qos: 1 })
  await until(() => got.length === 1, 5000, 'a message through the broker')
  t.pass('the broker keeps serving while the graph fails')
  t.match(await request(admin, G, { op: 'list' }), { state: 'ok', runs: true, links: [{ idf: 'n' }, { odf: 'n' }] }, 'the graph is as it was built')
})

t.test('a link to a feature of another account needs a grant', async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  await b.addAccount('B', 'pw-B')
  const where = { url: b.url, httpPort }
  const theirs = randomUUID()
  const mine = randomUUID()
  const sensor = await DeviceApp.start(t, where, { username: 'B', password: 'pw-B' }, theirs, { name: 'B-sensor', idf_list: ['level'] }, () => 5)
  const display = await DeviceApp.start(t, where, { username: 'A', password: 'pw-A' }, mine, { name: 'A-display', odf_list: ['level'] })
  const denied = await request(admin, G, { op: 'add_link', da_id: theirs, idf: 'level', func: null })
  t.match(denied, { state: 'error', error: new RegExp(`belongs to another account and A has no grant for /B/devices/${theirs}/idf/level`) }, 'refused without a grant')
  t.equal(b.app.graphs?.store.links('A').length, 0, 'no link was made')
  t.equal(sensor.signals.length, 0, 'and the other account\'s device got no signal')
  b.grant('B', 'A', `/B/devices/${theirs}/idf/#`, { subscribe: true })
  t.match(await request(admin, G, { op: 'add_link', da_id: theirs, idf: 'level', func: null }), { state: 'ok' }, 'with a grant to read it, the link is made')
  t.match(await request(admin, G, { op: 'add_link', da_id: mine, odf: 'level', func: null }), { state: 'ok' })
  await display.waitFor('data from the other account', (a) => a.received.length > 0)
  t.equal(display.received[0]?.[1], '5', "B's readings reach A's display through A's graph")
  const reverse = await connectClient(t, b.url, { username: 'B', password: 'pw-B', protocolVersion: 5 })
  const out = await request(reverse, '/B/graph/x', { op: 'add_link', da_id: mine, odf: 'level', func: null })
  t.match(out, { state: 'error', error: /no right to publish there/ }, "B may not write to A's output feature without a grant")
})

t.test("what an account may keep is bounded: a graph's 33rd input, an account's 1001st device", async (t) => {
  const { b, httpPort, admin } = await graphBroker(t)
  const store = b.app.graphs?.store
  if (store === undefined) throw new Error('graphs are not running')
  const ids = Array.from({ length: LIMITS.links + 1 }, () => randomUUID())
  store.transaction(() => {
    for (const id of ids) store.register(id, 'A', { name: 'probe', features: [{ kind: 'idf', name: 'v', types: [] }], acceptProtos: ['mqtt'], profile: {} }, 'rev', 0)
  })
  for (const id of ids.slice(0, LIMITS.links)) t.equal((await request(admin, '/A/graph/wide', { op: 'add_link', da_id: id, idf: 'v', func: null })).state, 'ok')
  const refused = await request(admin, '/A/graph/wide', { op: 'add_link', da_id: ids[LIMITS.links], idf: 'v', func: null })
  t.match(refused, { state: 'error', error: `graph "wide" has ${LIMITS.links} inputs, the most one graph takes` }, 'the 33rd input is refused')
  t.equal(store.links('A', 'wide').length, LIMITS.links, 'and not stored')

  store.transaction(() => {
    for (let i = store.countDevices('A'); i < LIMITS.devices; i++) {
      store.register(randomUUID(), 'A', { name: 'filler', features: [{ kind: 'odf', name: 'v', types: [] }], acceptProtos: ['mqtt'], profile: {} }, 'rev', 0)
    }
  })
  const one = randomUUID()
  const r = await devicesRequest(httpPort, 'PUT', `/devices/${one}`, { user: 'A', password: 'pw-A', body: { name: 'one too many', idf_list: ['v'] } })
  t.equal(r.status, 409, 'a device beyond the limit is refused')
  t.match(r.body.error, /account A has 1000 devices, the most perch keeps for one account/)
  t.equal(store.device(one), undefined, 'and not stored')
  // 100 graphs: attach, add_link and set_join may not make a 101st.
  store.transaction(() => {
    for (let i = store.graphs('A').length; i < LIMITS.graphs; i++) store.ensureGraph('A', `g${i}`, 0)
  })
  for (const body of [{ op: 'attach' }, { op: 'add_link', da_id: ids[0], idf: 'v', func: null }, { op: 'set_join', prev: null, new: null }]) {
    t.match(await request(admin, '/A/graph/one-more', body), { state: 'error', error: `account A has ${LIMITS.graphs} graphs, the most perch keeps for one account` }, `${body.op} may not make a graph past the limit`)
  }
  t.equal(store.graph('A', 'one-more'), undefined, 'no graph past the limit was made')
  const existing = ids[0] ?? ''
  const again = await devicesRequest(httpPort, 'PUT', `/devices/${existing}`, { user: 'A', password: 'pw-A', body: { name: 'probe', idf_list: ['v'] } })
  t.equal(again.status, 200, 'an existing device may still register again')
})
