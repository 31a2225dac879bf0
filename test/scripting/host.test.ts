// SandboxHost with real QuickJS in a real worker: loading, invoking, effects, batches, handlers,
// syntax errors, atomic replacement, KV, determinism.
import t from 'tap'
import { disposeClean, ECHO, errorText, failedWith, LIMITS, loadOk, message, NOW, sanitized, startHost } from './fixtures.js'

const store = new Map<string, Record<string, string>>([['seeded', { greeting: 'hello', count: '41' }]])
const host = await startHost({ kvSnapshot: (account) => store.get(account) ?? {} })

t.test('a rule publishes, logs and returns; effects come back in order', async (t) => {
  await loadOk(
    t,
    host,
    'acme',
    'calc',
    `
export function onMessage(msg) {
  const v = JSON.parse(msg.payload)
  publish('out/f', { f: v.c * 9 / 5 + 32 }, { qos: 1, retain: true })
  publish('out/raw', 'as is')
  log.info('converted', v.c, { at: now() })
  return { c: v.c, topic: msg.topic }
}`,
  )
  const r = await host.invoke('acme', 'calc', [message('in/t', '{"c":100}')])
  t.same(r, {
    ok: true,
    effects: [
      { kind: 'publish', topic: 'out/f', payload: '{"f":212}', qos: 1, retain: true },
      { kind: 'publish', topic: 'out/raw', payload: 'as is', qos: 0, retain: false },
      { kind: 'log', level: 'info', message: `converted 100 {"at":${NOW}}` },
    ],
    returned: '{"c":100,"topic":"in/t"}',
  })
})

t.test('a batch runs every message; returned is the last handler result', async (t) => {
  await loadOk(
    t,
    host,
    'acme',
    'counter',
    `
export function onMessage(msg) {
  const n = Number(kv.get('n') ?? '0') + 1
  kv.set('n', String(n))
  publish('count', String(n))
  return n
}`,
  )
  const first = await host.invoke('acme', 'counter', [message('a', ''), message('b', ''), message('c', '')])
  t.same(first.ok && first.effects.filter((e) => e.kind === 'publish').map((e) => e.kind === 'publish' && e.payload), ['1', '2', '3'], 'kv.get sees the batch’s own writes')
  t.equal(first.ok && first.returned, '3')
  const second = await host.invoke('acme', 'counter', [message('d', '')])
  t.equal(second.ok && second.returned, '4', 'the next batch sees the stored value')
  const none = await host.invoke('acme', 'counter', [])
  t.same(none, { ok: true, effects: [], returned: undefined }, 'an empty batch does nothing')
})

t.test('onTimer and onEvent get their inputs; a missing handler is no-handler', async (t) => {
  await loadOk(
    t,
    host,
    'acme',
    'multi',
    `
export function onTimer(t) { publish('tick', String(t.at)); return 'timer' }
export function onEvent(e) { publish('event/' + e.type, JSON.stringify(e)); return e.type }`,
  )
  const timer = await host.invoke('acme', 'multi', [{ kind: 'timer', at: 1234 }])
  t.same(timer.ok && timer.effects, [{ kind: 'publish', topic: 'tick', payload: '1234', qos: 0, retain: false }])
  t.equal(timer.ok && timer.returned, '"timer"')
  const event = await host.invoke('acme', 'multi', [{ kind: 'event', event: { type: 'connect', client: 'c1' } }])
  t.same(event.ok && event.effects, [{ kind: 'publish', topic: 'event/connect', payload: '{"type":"connect","client":"c1"}', qos: 0, retain: false }])
  const msg = await host.invoke('acme', 'multi', [message('x', 'y')])
  t.equal(failedWith(msg), 'no-handler')
  t.match(errorText(msg), /onMessage/)
  t.equal(failedWith(await host.invoke('acme', 'nope', [message('x', 'y')])), 'no-handler', 'unknown rule')
  t.equal(failedWith(await host.invoke('nobody', 'nope', [message('x', 'y')])), 'no-handler', 'unknown account')
})

t.test('load reports syntax errors with line and column, and other problems as invalid', async (t) => {
  const syntax = await host.load({ account: 'acme', name: 'broken', source: 'export function onMessage(m) {\n  let x = ;\n}', limits: LIMITS })
  t.same(syntax, { ok: false, error: { code: 'syntax', message: "SyntaxError: unexpected token in expression: ';' (at broken.js:2:11)", line: 2, column: 11 } })
  const cases: [string, RegExp][] = [
    ["import fs from 'fs'\nexport function onMessage() {}", /cannot import modules/],
    ['export const x = 1', /must export a function onMessage, onTimer or onEvent/],
    ["throw new Error('top-level boom')", /Error: top-level boom \(at broken\.js:1:\d+\)/],
    ['while (true) {}\nexport function onMessage() {}', /time limit/],
    ['await new Promise(() => {})\nexport function onMessage() {}', /never finished loading/],
  ]
  for (const [source, why] of cases) {
    const r = await host.load({ account: 'acme', name: 'broken', source, limits: LIMITS })
    t.equal(r.ok ? 'ok' : r.error.code, 'invalid', source)
    t.match(r.ok ? '' : r.error.message, why)
    sanitized(t, r.ok ? '' : r.error.message)
  }
  const badName = await host.load({ account: 'acme', name: '../etc', source: ECHO, limits: LIMITS })
  t.equal(badName.ok ? 'ok' : badName.error.code, 'invalid')
  const badLimits = await host.load({ account: 'acme', name: 'x', source: ECHO, limits: { timeMs: 0, maxPublishes: 1 } })
  t.equal(badLimits.ok ? 'ok' : badLimits.error.code, 'invalid')
  const tooSmall = await host.load({ account: 'acme', name: 'x', source: ECHO, limits: { ...LIMITS, memoryMb: 8 } })
  t.equal(tooSmall.ok ? 'ok' : tooSmall.error.code, 'invalid')
  t.equal(failedWith(await host.invoke('acme', 'broken', [message('x', 'y')])), 'no-handler', 'nothing of a failed load runs')
})

t.test('a replacement only takes over once it compiled; a broken one leaves the old rule running', async (t) => {
  const version = (n: number): string => `export function onMessage() { return ${n} }`
  await loadOk(t, host, 'acme', 'versioned', version(1))
  const v = async (): Promise<string | undefined> => {
    const r = await host.invoke('acme', 'versioned', [message('x', '')])
    return r.ok ? r.returned : r.error.code
  }
  t.equal(await v(), '1')
  const broken = await host.load({ account: 'acme', name: 'versioned', source: 'export function onMessage() { return 2 ', limits: LIMITS })
  t.equal(broken.ok ? 'ok' : broken.error.code, 'syntax')
  t.equal(await v(), '1', 'a syntax error keeps version 1')
  const throwing = await host.load({ account: 'acme', name: 'versioned', source: `throw new Error('no')\n${version(3)}`, limits: LIMITS })
  t.equal(throwing.ok ? 'ok' : throwing.error.code, 'invalid')
  t.equal(await v(), '1', 'a failing top level keeps version 1')
  await loadOk(t, host, 'acme', 'versioned', version(4))
  t.equal(await v(), '4', 'a good replacement takes over')
  await host.unload('acme', 'versioned')
  t.equal(await v(), 'no-handler', 'unloaded')
})

t.test('a failing call applies nothing: no publishes, no kv writes', async (t) => {
  await loadOk(
    t,
    host,
    'acme',
    'halfway',
    `
export function onMessage(msg) {
  publish('before', 'x')
  kv.set('halfway', msg.payload)
  if (msg.payload === 'fail') null.boom()
  return kv.get('halfway')
}`,
  )
  const failed = await host.invoke('acme', 'halfway', [message('t', 'ok-1'), message('t', 'fail')])
  t.equal(failedWith(failed), 'runtime')
  t.match(errorText(failed), /TypeError: .*\(at halfway\.js:5:\d+\)/)
  sanitized(t, errorText(failed))
  await loadOk(t, host, 'acme', 'reader', `export function onMessage() { return kv.get('halfway') ?? 'unset' }`)
  const read = await host.invoke('acme', 'reader', [message('t', '')])
  t.equal(read.ok && read.returned, '"unset"', 'the failed batch wrote nothing, not even its first message’s write')
  await loadOk(
    t,
    host,
    'acme',
    'late',
    `
export function onMessage(msg) {
  Promise.resolve().then(() => publish('late', msg.payload))
  if (msg.payload === 'fail') throw new Error('after queueing a job')
  publish('now', msg.payload)
}`,
  )
  t.equal(failedWith(await host.invoke('acme', 'late', [message('t', 'fail')])), 'runtime')
  const next = await host.invoke('acme', 'late', [message('t', 'ok')])
  t.same(next.ok && next.effects.map((e) => e.kind === 'publish' && `${e.topic}=${e.payload}`), ['now=ok', 'late=ok'], 'a job queued by a failed call does not publish into the next one')
})

t.test('kv: seeded from kvSnapshot, shared by an account’s rules, invisible to other accounts, updated from outside', async (t) => {
  const rule = `
export function onMessage(msg) {
  if (msg.topic === 'set') { kv.set('shared', msg.payload); return 'set' }
  if (msg.topic === 'del') { kv.delete('greeting'); return 'deleted' }
  return [kv.get('greeting') ?? null, kv.get('count') ?? null, kv.get('shared') ?? null]
}`
  await loadOk(t, host, 'seeded', 'a', rule)
  await loadOk(t, host, 'seeded', 'b', rule)
  await loadOk(t, host, 'other', 'a', rule)
  const read = async (account: string, name: string): Promise<string | undefined> => {
    const r = await host.invoke(account, name, [message('get', '')])
    return r.ok ? r.returned : r.error.code
  }
  t.equal(await read('seeded', 'a'), '["hello","41",null]', 'the snapshot is visible')
  const set = await host.invoke('seeded', 'a', [message('set', 'from-a')])
  t.same(set.ok && set.effects, [{ kind: 'kv.set', key: 'shared', value: 'from-a' }], 'the write comes back as an effect to persist')
  t.equal(await read('seeded', 'b'), '["hello","41","from-a"]', 'another rule of the account sees it')
  t.equal(await read('other', 'a'), '[null,null,null]', 'another account does not')
  host.updateKv('seeded', { count: '42', greeting: null })
  t.equal(await read('seeded', 'b'), '[null,"42","from-a"]', 'changes made outside the rules reach the cache')
  const del = await host.invoke('seeded', 'b', [message('del', '')])
  t.same(del.ok && del.effects, [{ kind: 'kv.delete', key: 'greeting' }])
})

t.test('async handlers: awaited work is collected, a rejection fails the call', async (t) => {
  await loadOk(
    t,
    host,
    'acme',
    'async',
    `
export async function onMessage(msg) {
  await null
  publish('a', '1')
  const v = await Promise.resolve(msg.payload)
  if (v === 'reject') throw new RangeError('rejected ' + v)
  publish('b', v)
  return v
}`,
  )
  const r = await host.invoke('acme', 'async', [message('t', 'x'), message('t', 'y')])
  t.same(r.ok && r.effects.map((e) => e.kind === 'publish' && `${e.topic}=${e.payload}`), ['a=1', 'a=1', 'b=x', 'b=y'])
  t.equal(r.ok && r.returned, '"y"', 'the last handler’s resolved value')
  const rejected = await host.invoke('acme', 'async', [message('t', 'reject')])
  t.equal(failedWith(rejected), 'runtime')
  t.match(errorText(rejected), /RangeError: rejected reject/)
  await loadOk(t, host, 'acme', 'never', 'export async function onMessage() { await new Promise(() => {}) }')
  const never = await host.invoke('acme', 'never', [message('t', '')])
  t.equal(failedWith(never), 'runtime')
  t.match(errorText(never), /never settled/)
})

t.test('Math.random is seeded per context: two rules loaded back to back differ', async (t) => {
  const source = 'const first = [Math.random(), Math.random(), Math.random()]\nexport function onMessage() { return first }'
  await loadOk(t, host, 'dice', 'one', source)
  await loadOk(t, host, 'dice', 'two', source)
  const one = await host.invoke('dice', 'one', [message('t', '')])
  const two = await host.invoke('dice', 'two', [message('t', '')])
  t.ok(one.ok && two.ok && one.returned !== two.returned, `${one.ok && one.returned} vs ${two.ok && two.returned}`)
  const values: unknown = JSON.parse((one.ok && one.returned) || '[]')
  t.ok(Array.isArray(values) && values.every((v) => typeof v === 'number' && v >= 0 && v < 1) && new Set(values).size === 3)
})

t.test('the sandbox has ECMAScript built-ins and the host API, nothing else', async (t) => {
  await loadOk(
    t,
    host,
    'acme',
    'globals',
    `
export function onMessage() {
  return ['require', 'process', 'fetch', 'setTimeout', 'console', 'WebAssembly', 'eval', 'WeakRef', 'FinalizationRegistry', 'std', 'os']
    .filter((name) => typeof globalThis[name] !== 'undefined')
}`,
  )
  const r = await host.invoke('acme', 'globals', [message('t', '')])
  t.equal(r.ok && r.returned, '[]')
  await loadOk(
    t,
    host,
    'acme',
    'idioms',
    `
class MyError extends Error { constructor(m) { super(m); this.name = 'MyError' } }
export function onMessage() {
  const o = {}
  o.toString = () => 'custom'
  const e = new MyError('m')
  return [String(o), e.name, e instanceof Error, [3, 1, 2].sort().join(), new Map([[1, 2]]).get(1), /a(b)/.exec('ab')[1], typeof Date.now()]
}`,
  )
  const idioms = await host.invoke('acme', 'idioms', [message('t', '')])
  t.equal(idioms.ok && idioms.returned, '["custom","MyError",true,"1,2,3",2,"b","number"]', 'frozen intrinsics still allow the usual idioms')
})

t.test('stats count accounts and rules', async (t) => {
  const s = host.stats()
  t.ok(s.accounts >= 3 && s.rules >= 8, JSON.stringify(s))
  t.equal(s.workerRestarts, 0)
  t.equal(s.inFlight, 0)
})

t.test('dispose leaves nothing behind', async (t) => {
  await disposeClean(t, host)
  await t.rejects(host.invoke('acme', 'calc', [message('t', '')]), /disposed/)
})
