// Rules through the broker with real MQTT clients: pushed over MQTT, triggered by topics,
// intervals and events, run on request, replaced, broken, deleted, failing, and kept within
// the account's rights; their KV store survives a restart.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { type AccountsBroker, pubackCode, startAccountsBroker } from '../helpers/accounts.js'
import { connectWithAck, type Received, sleep, until } from '../helpers/clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

type Client = Awaited<ReturnType<typeof connectWithAck>>

async function setup(t: Teardown, overrides: Record<string, unknown> = {}, dataDir?: string): Promise<{ b: AccountsBroker; a: Client }> {
  const b = await startAccountsBroker(t, { rules: { enabled: true, reloadInterval: 0.1 }, ...overrides }, dataDir === undefined ? {} : { dataDir })
  if (b.app.accounts?.hooks.acl.account('A') === undefined) await b.addAccount('A', 'pw-A')
  if (b.app.accounts?.hooks.acl.account('B') === undefined) await b.addAccount('B', 'pw-B')
  const a = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'A', password: 'pw-A' })
  await a.client.subscribeAsync('/A/#')
  return { b, a }
}

const on = (ms: Received[], topic: string): string[] => ms.filter((m) => m.topic === topic).map((m) => m.payload.toString())

async function push(a: Client, name: string, source: string, manifest?: unknown): Promise<Record<string, unknown>> {
  const topic = `/A/scripts/put/${name}`
  const before = on(a.messages, `${topic}/result`).length
  await a.client.publishAsync(topic, manifest === undefined ? source : JSON.stringify({ source, manifest }), { qos: 1 })
  await until(() => on(a.messages, `${topic}/result`).length > before, 10_000, `result of pushing ${name}`)
  return JSON.parse(on(a.messages, `${topic}/result`)[before] ?? '{}') as Record<string, unknown>
}

const C2F = `export function onMessage(msg) {
  const v = JSON.parse(msg.payload)
  publish('out/f', JSON.stringify({ f: v.c * 9 / 5 + 32 }))
  return { f: v.c * 9 / 5 + 32 }
}`

t.test('a pushed rule runs on its trigger topics and on /A/run/NAME, whose return value is the result', async (t) => {
  const { a } = await setup(t)
  t.same(await push(a, 'c2f', C2F, { triggers: { topics: ['in/c'] } }), { ok: true, version: 1 })
  await a.client.publishAsync('/A/in/c', JSON.stringify({ c: 100 }), { qos: 1 })
  await until(() => on(a.messages, '/A/out/f').length === 1, 10_000, 'rule output')
  t.same(on(a.messages, '/A/out/f'), ['{"f":212}'])
  await a.client.publishAsync('/A/run/c2f', JSON.stringify({ c: 0 }), { qos: 1 })
  await until(() => on(a.messages, '/A/run/c2f/result').length === 1, 10_000, 'run result')
  t.same(on(a.messages, '/A/run/c2f/result'), ['{"f":32}'])
  await a.client.publishAsync('/A/run/nope', '{}', { qos: 1 })
  await until(() => on(a.messages, '/A/run/nope/result').length === 1, 10_000, 'unknown rule answer')
  t.match(JSON.parse(on(a.messages, '/A/run/nope/result')[0] ?? '{}'), { ok: false, error: /no rule "nope"/ })
})

t.test('replace, broken push (the old rule keeps running, the error has line and column), delete, list', async (t) => {
  const { a } = await setup(t)
  await push(a, 'r', `export function onMessage(m) { publish('out/v', 'one') }`, { triggers: { topics: ['in/#'] } })
  t.same(await push(a, 'r', `export function onMessage(m) { publish('out/v', 'two') }`, { triggers: { topics: ['in/#'] } }), { ok: true, version: 2 })
  const broken = await push(a, 'r', 'export function onMessage(m) {\n  publish(\'out/v\', \n}', { triggers: { topics: ['in/#'] } })
  t.equal(broken.ok, false)
  t.match(broken, { line: 3 }, 'the syntax error names its line')
  t.type(broken.column, 'number')
  t.match(await push(a, 'r', 'export const x = 1', undefined), { ok: false, error: /onMessage|handler/ }, 'a module without handlers is refused')
  t.match(await push(a, 'bad name!', 'export function onMessage() {}'), { ok: false })
  t.match(await push(a, 'r2', 'export function onMessage() {}', { triggers: { topics: ['/B/#'] } }), { ok: false, error: /outside the account's read rights/ })
  t.match(await push(a, 'r2', 'export function onMessage() {}', { triggers: { bogus: 1 } }), { ok: false, error: /manifest/ })
  await a.client.publishAsync('/A/in/x', 'go', { qos: 1 })
  await until(() => on(a.messages, '/A/out/v').length === 1, 10_000, 'output')
  t.same(on(a.messages, '/A/out/v'), ['two'], 'version 2 runs; the broken push changed nothing')

  await a.client.publishAsync('/A/scripts/list', '', { qos: 1 })
  await until(() => on(a.messages, '/A/scripts/list/result').length === 1, 10_000, 'list')
  t.match(JSON.parse(on(a.messages, '/A/scripts/list/result')[0] ?? '{}'), { ok: true, rules: [{ name: 'r', version: 2, origin: 'mqtt', running: true }] })

  await a.client.publishAsync('/A/scripts/delete/r', '', { qos: 1 })
  await until(() => on(a.messages, '/A/scripts/delete/r/result').length === 1, 10_000, 'delete')
  t.same(JSON.parse(on(a.messages, '/A/scripts/delete/r/result')[0] ?? '{}'), { ok: true })
  await a.client.publishAsync('/A/in/x', 'after delete', { qos: 1 })
  await sleep(300)
  t.same(on(a.messages, '/A/out/v'), ['two'], 'a deleted rule runs no more')
})

t.test('interval and event triggers', async (t) => {
  const { b, a } = await setup(t)
  const source = `
export function onTimer(t) { publish('out/tick', String(typeof t.at)) }
export function onEvent(e) { publish('out/event', e.type + ' ' + e.clientId) }
export function onMessage() {}`
  await push(a, 'clock', source, { triggers: { interval: 0.1, events: ['client.connected', 'client.disconnected'] } })
  await until(() => on(a.messages, '/A/out/tick').length >= 2, 10_000, 'two ticks')
  t.equal(on(a.messages, '/A/out/tick')[0], 'number')
  const device = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'A', password: 'pw-A', clientId: 'dev-1' })
  device.client.end()
  await until(() => on(a.messages, '/A/out/event').length >= 2, 10_000, 'events')
  t.same(on(a.messages, '/A/out/event').slice(0, 2), ['client.connected dev-1', 'client.disconnected dev-1'])
  const other = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'B', password: 'pw-B', clientId: 'b-dev' })
  other.client.end()
  await sleep(200)
  t.notOk(on(a.messages, '/A/out/event').some((e) => e.includes('b-dev')), 'another account’s clients are not A’s events')
})

t.test('a rule publishes only where its account may: the ACL applies to rules', async (t) => {
  const { b, a } = await setup(t)
  const victim = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'B', password: 'pw-B' })
  await victim.client.subscribeAsync('/B/#')
  await push(a, 'sneaky', `export function onMessage(m) { publish('/B/cmd', 'injected'); publish('ok', 'mine'); publish('$SYS/x', 'no') }`, {
    triggers: { topics: ['go'] },
  })
  await a.client.publishAsync('/A/go', '1', { qos: 1 })
  await until(() => on(a.messages, '/A/ok').length === 1, 10_000, 'own publish')
  await sleep(200)
  t.same(victim.messages, [], 'nothing reached B')
  t.equal(b.app.rules?.engine.rule('A', 'sneaky')?.counters.publishesDenied, 2)
  t.ok(on(a.messages, '/A/events/acl_denied').some((e) => e.includes('/B/cmd')), 'the account is told')
  // B may not push rules into A, nor fake A's rule errors.
  t.equal(await pubackCode(victim.client, '/A/scripts/put/x', 'export function onMessage(){}'), 0x87)
  b.grant('A', 'B', '/A/#', { publish: true })
  t.equal(await pubackCode(victim.client, '/A/scripts/put/x', 'export function onMessage(){}'), 0x87, 'not even with publish rights on /A/#')
  t.equal(await pubackCode(victim.client, '/A/rules/sneaky/error', '{}'), 0x87)
  t.equal(await pubackCode(a.client, '/A/rules/sneaky/error', '{}'), 0x87, 'only perch writes rule errors')
})

t.test('a failing rule: nothing of the failed call is applied, errors are published, five in a row suspend it', async (t) => {
  const { b, a } = await setup(t)
  await push(a, 'flaky', `export function onMessage(m) { publish('out/partial', 'x'); kv.set('k', m.payload); if (m.payload !== 'ok') throw new Error('bad reading ' + m.payload) }`, {
    triggers: { topics: ['in'] },
    batch: 1,
  })
  for (let i = 0; i < 5; i++) await a.client.publishAsync('/A/in', `bad-${i}`, { qos: 1 })
  await until(() => on(a.messages, '/A/rules/flaky/error').length === 5, 10_000, 'five errors')
  const errors = on(a.messages, '/A/rules/flaky/error').map((e) => JSON.parse(e) as Record<string, unknown>)
  t.match(errors[0], { code: 'runtime', message: /bad reading bad-0/, consecutive: 1 })
  t.match(errors[4], { consecutive: 5, suspendedUntil: /T/ })
  t.notOk(JSON.stringify(errors).includes('/work/') || JSON.stringify(errors).includes('node:'), 'no host paths or frames')
  t.same(on(a.messages, '/A/out/partial'), [], 'a failing call publishes nothing')
  await a.client.publishAsync('/A/in', 'ok', { qos: 1 })
  await sleep(300)
  t.same(on(a.messages, '/A/out/partial'), [], 'suspended: the input is dropped')
  t.ok((b.app.rules?.engine.rule('A', 'flaky')?.counters.dropped ?? 0) >= 1)
})

t.test('KV written by a rule survives a restart', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'perch-rules-kv-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const count = `export function onMessage(m) { const n = Number(kv.get('n') ?? 0) + 1; kv.set('n', String(n)); publish('out/n', String(n)) }`
  const first = await setup(t, {}, dataDir)
  await push(first.a, 'count', count, { triggers: { topics: ['tick'] } })
  for (let i = 0; i < 3; i++) await first.a.client.publishAsync('/A/tick', '', { qos: 1 })
  await until(() => on(first.a.messages, '/A/out/n').length === 3, 10_000, 'three counts')
  first.a.client.end(true)
  await first.b.stop()
  const second = await setup(t, {}, dataDir)
  t.ok(second.b.app.rules?.engine.rule('A', 'count'), 'the pushed rule is back')
  await second.a.client.publishAsync('/A/tick', '', { qos: 1 })
  await until(() => on(second.a.messages, '/A/out/n').length === 1, 10_000, 'count after restart')
  t.same(on(second.a.messages, '/A/out/n'), ['4'])
})

t.test('runfile runs a rule from the rules directory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-rules-dir-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'double.js'), 'export function onMessage(m) { return Number(m.payload) * 2 }')
  const { a } = await setup(t, { rules: { enabled: true, dir } })
  await a.client.publishAsync('/A/runfile/double', '21', { qos: 1 })
  await until(() => on(a.messages, '/A/runfile/double/result').length === 1, 10_000, 'runfile result')
  t.same(on(a.messages, '/A/runfile/double/result'), ['42'])
  writeFileSync(join(dir, 'double.js'), 'export function onMessage(m) { return Number(m.payload) * 3 }')
  await a.client.publishAsync('/A/runfile/double', '21', { qos: 1 })
  await until(() => on(a.messages, '/A/runfile/double/result').length === 2, 10_000, 'edited file')
  t.same(on(a.messages, '/A/runfile/double/result')[1], '63', 'an edited file is loaded again')
  await a.client.publishAsync('/A/runfile/missing', '1', { qos: 1 })
  await until(() => on(a.messages, '/A/runfile/missing/result').length === 1, 10_000, 'missing file')
  t.match(JSON.parse(on(a.messages, '/A/runfile/missing/result')[0] ?? '{}'), { ok: false, error: /no file rule/ })
})

t.test('under load, inputs are batched and the bounded inbox drops the oldest, counted', async (t) => {
  const { b, a } = await setup(t)
  await push(a, 'sum', `export function onMessage(m) { kv.set('last', m.payload) }`, { triggers: { topics: ['load/+'] }, inbox: 500, batch: 100 })
  const n = 3000
  for (let i = 0; i < n; i++) a.client.publish(`/A/load/${i % 10}`, String(i), { qos: 0 })
  const rule = b.app.rules?.engine.rule('A', 'sum')
  await until(() => rule !== undefined && rule.counters.inputs + rule.counters.dropped === n, 20_000, 'every input processed or dropped')
  t.ok((rule?.counters.invocations ?? n) < (rule?.counters.inputs ?? 0), `batched: ${rule?.counters.invocations} calls for ${rule?.counters.inputs} inputs`)
  t.equal(rule?.counters.errors, 0)
})

t.test('under load, the outputs of batches keep the order of the inputs', async (t) => {
  const { a } = await setup(t)
  await push(a, 'relay', `export function onMessage(m) { publish('ordered', m.payload) }`, { triggers: { topics: ['seq'] }, inbox: 10000, batch: 50 })
  const n = 2000
  for (let i = 0; i < n; i++) a.client.publish('/A/seq', String(i), { qos: 0 })
  await until(() => on(a.messages, '/A/ordered').length === n, 20_000, 'every input relayed')
  t.same(on(a.messages, '/A/ordered'), Array.from({ length: n }, (_, i) => String(i)))
})

t.test('a rule stuck in while(true) is stopped at its limit while the broker keeps serving', async (t) => {
  const { b, a } = await setup(t)
  const other = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'B', password: 'pw-B' })
  await other.client.subscribeAsync('/B/echo')
  await push(a, 'spin', 'export function onMessage() { while (true) {} }', { triggers: { topics: ['spin'] }, batch: 1 })
  for (let i = 0; i < 3; i++) await a.client.publishAsync('/A/spin', String(i), { qos: 1 })
  // While the sandbox spins, other clients are served: the broker never runs guest code.
  for (let i = 0; i < 20; i++) await other.client.publishAsync('/B/echo', String(i), { qos: 1 })
  await until(() => other.messages.length === 20, 10_000, 'B served')
  await until(() => on(a.messages, '/A/rules/spin/error').length === 3, 10_000, 'three timeouts')
  t.match(JSON.parse(on(a.messages, '/A/rules/spin/error')[0] ?? '{}'), { code: 'timeout' })
})

t.test('the abuse suite through the broker: each attack fails alone, B is served throughout, nothing leaks', async (t) => {
  const { b, a } = await setup(t)
  const other = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'B', password: 'pw-B' })
  await other.client.subscribeAsync('/B/echo')
  // Attacks that memory or the stack must stop get a roomy clock, so the clock does not stop them first.
  const attacks: [string, string, RegExp, number?][] = [
    ['spin', 'while (true) {}', /time limit/],
    ['regex', "return /^(a+)+$/.test('a'.repeat(40) + 'b')", /time limit/],
    ['repeat', "return 'x'.repeat(2 ** 28).length", /out of memory/, 5000],
    ['objects', 'const a = []\nfor (;;) a.push({ i: a.length, s: "xx" + a.length })', /out of memory/, 5000],
    ['recursion', 'const f = (n) => f(n + 1) + 1\nreturn f(0)', /stack/, 5000],
    ['json', "return JSON.parse('['.repeat(1e6) + ']'.repeat(1e6))", /stack/, 5000],
    ['jobs', 'const loop = () => Promise.resolve().then(loop)\nloop()', /time limit/],
    ['flood', "for (let i = 0; i < 10000; i++) publish('out', String(i))", /publishes/],
    ['kv', "for (let i = 0; ; i++) kv.set('k' + i, 'v'.repeat(60000))", /kv/i],
    ['escape', "return globalThis.constructor.constructor('return process')().pid", /cannot compile code/],
  ]
  let served = 0
  for (const [name, body, why, timeMs = 200] of attacks) {
    await push(a, name, `export function onMessage(msg) {\n${body}\n}`, { triggers: { topics: [`attack/${name}`] }, batch: 1, limits: { timeMs } })
    await a.client.publishAsync(`/A/attack/${name}`, 'x', { qos: 1 })
    for (let i = 0; i < 5; i++) await other.client.publishAsync('/B/echo', String(served++), { qos: 1 })
    await until(() => on(a.messages, `/A/rules/${name}/error`).length === 1, 20_000, `the error of ${name}`)
    const error = JSON.parse(on(a.messages, `/A/rules/${name}/error`)[0] ?? '{}') as { message?: string }
    t.match(error.message, why, `${name}: ${error.message}`)
    t.notMatch(error.message, /\/work\/|node_modules|file:\/\//, `${name}: no host detail`)
    t.same(on(a.messages, '/A/out'), [], `${name}: a failed call publishes nothing`)
  }
  await until(() => other.messages.length === served, 10_000, 'B served throughout')
  const c2f = await push(a, 'c2f', C2F, { triggers: { topics: ['in/c'] } })
  t.match(c2f, { ok: true })
  await a.client.publishAsync('/A/in/c', JSON.stringify({ c: 100 }), { qos: 1 })
  await until(() => on(a.messages, '/A/out/f').length === 1, 10_000, 'a good rule still runs')
  const host = await b.app.rules?.host
  // QuickJS leaks the objects of a promise chain interrupted mid-job, so that runtime fails its
  // dispose; the account's module is then thrown away with the leak, never reused.
  const stats = host?.stats()
  t.ok(stats !== undefined && stats.disposeFailures <= stats.modulesRecycled, `every failed dispose was followed by a rebuilt module: ${JSON.stringify(stats)}`)
  t.equal(host?.stats().workerRestarts, 0, 'nothing needed the watchdog')
})
