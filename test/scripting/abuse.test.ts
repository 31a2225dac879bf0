// The abuse suite of issue 5: every attack is contained to its own call (or its own account's
// module), the message says what happened without host detail, the host keeps serving other
// accounts, and every sandbox still disposes cleanly.
import type { Test } from 'tap'
import t from 'tap'
import type { InvokeErrorCode, RuleLimits } from '../../src/scripting/index.js'
import { ECHO, echoWorks, errorText, failedWith, loadOk, message, sanitized, startHost } from './fixtures.js'

const host = await startHost()
await loadOk(t, host, 'bystander', 'echo', ECHO)

let next = 0
/** For attacks that must be stopped by memory or stack: time is not what should stop them. */
const ROOMY = { timeMs: 5000 }

/**
 * Loads `body` as the onMessage of a fresh account, invokes it, and checks the code, the message,
 * that the bystander still answers, that the account's other rule still answers afterwards, and
 * that unloading disposes cleanly.
 */
async function attack(t: Test, body: string, code: InvokeErrorCode, why: RegExp, limits: Partial<RuleLimits> = {}): Promise<void> {
  const account = `attacker-${next++}`
  await loadOk(t, host, account, 'echo', ECHO)
  await loadOk(t, host, account, 'evil', `export function onMessage(msg) {\n${body}\n}`, limits)
  const r = await host.invoke(account, 'evil', [message('in', 'payload')])
  t.equal(failedWith(r), code, `fails with ${code}`)
  t.match(errorText(r), why)
  sanitized(t, errorText(r))
  await echoWorks(t, host)
  await echoWorks(t, host, account)
  const before = host.stats().disposeFailures
  await host.unload(account, 'evil')
  await host.unload(account, 'echo')
  t.equal(host.stats().disposeFailures, before, 'unloading disposes cleanly')
}

t.test('while (true) {} is interrupted; the rule stays loaded and times out again', async (t) => {
  await attack(t, 'while (true) {}', 'timeout', /time limit/)
  await loadOk(t, host, 'spinner', 'spin', 'export function onMessage() { for (;;) {} }')
  t.equal(failedWith(await host.invoke('spinner', 'spin', [message('a', '')])), 'timeout')
  t.equal(failedWith(await host.invoke('spinner', 'spin', [message('a', ''), message('b', '')])), 'timeout', 'a batch gets a budget, not a free pass')
  await host.unload('spinner', 'spin')
})

t.test('a catastrophic regex is interrupted', async (t) => {
  await attack(t, "return /^(a+)+$/.test('a'.repeat(40) + 'b')", 'timeout', /time limit/)
})

t.test("'x'.repeat(2**28) runs out of memory at once and the account module is rebuilt", async (t) => {
  const recycled = host.stats().modulesRecycled
  await attack(t, "return 'x'.repeat(2 ** 28).length", 'memory', /out of memory/, ROOMY)
  t.ok(host.stats().modulesRecycled > recycled, 'the module was recycled')
})

t.test('an object bomb hits the memory cap', async (t) => {
  // A generous time limit, so the memory cap (not the clock) is what stops it.
  await attack(t, 'const a = []\nfor (;;) a.push({ i: a.length, s: "xx" + a.length })', 'memory', /out of memory/, ROOMY)
})

t.test('a string bomb hits the hard cap of the WASM memory', async (t) => {
  await attack(t, "const c = []\nfor (let i = 0; i < 400; i++) c.push('x'.repeat(1 << 20) + i)\nreturn c.length", 'memory', /out of memory/, ROOMY)
})

t.test('a typed-array bomb hits the hard cap of the WASM memory', async (t) => {
  await attack(t, 'const c = []\nfor (let i = 0; i < 400; i++) c.push(new Uint8Array(1 << 20))\nreturn c.length', 'memory', /out of memory/, ROOMY)
})

t.test('deep recursion is a stack overflow, and the module is rebuilt', async (t) => {
  await attack(t, 'function f(n) { return f(n + 1) + 1 }\nreturn f(0)', 'stack', /stack overflow/, ROOMY)
})

t.test('deeply nested JSON.parse is a stack overflow', async (t) => {
  await attack(t, "return JSON.parse('['.repeat(200000) + ']'.repeat(200000))", 'stack', /stack overflow/, ROOMY)
})

t.test('deeply nested JSON.stringify is a stack overflow', async (t) => {
  await attack(t, 'let a = []\nfor (let i = 0; i < 100000; i++) a = [a]\nreturn JSON.stringify(a).length', 'stack', /stack overflow/, ROOMY)
})

t.test('a regex with 30,000 groups is refused by the engine', async (t) => {
  await attack(t, "return new RegExp('('.repeat(30000) + ')'.repeat(30000)).source.length", 'runtime', /SyntaxError|too many/)
})

t.test('an endless promise-job loop is interrupted and leaves no jobs behind', async (t) => {
  await attack(t, '(async () => { for (;;) await null })()\nreturn 1', 'timeout', /time limit/)
  await loadOk(t, host, 'jobs', 'loop', 'let n = 0\nexport function onMessage(m) { if (m.payload === "loop") (async () => { for (;;) await null })(); return ++n }')
  t.equal(failedWith(await host.invoke('jobs', 'loop', [message('t', 'loop')])), 'timeout')
  const after = await host.invoke('jobs', 'loop', [message('t', 'quiet')])
  t.equal(after.ok && after.returned, '2', 'the next call runs normally: the interrupted loop left no job behind')
  await host.unload('jobs', 'loop')
})

t.test('an endless promise chain is interrupted; a runtime QuickJS leaks into is never reused', async (t) => {
  // Where the interrupt lands decides whether QuickJS leaks the chain's objects; a leaking
  // runtime fails its dispose, and its module must then be thrown away, not reused.
  const before = host.stats()
  await loadOk(t, host, 'chain', 'evil', 'let n = 0\nexport function onMessage(m) { if (m.payload === "loop") { const loop = () => Promise.resolve().then(loop); loop() } return ++n }')
  for (let i = 0; i < 5; i++) t.equal(failedWith(await host.invoke('chain', 'evil', [message('t', 'loop')])), 'timeout')
  const after = await host.invoke('chain', 'evil', [message('t', 'quiet')])
  t.ok(after.ok, 'the rule runs again')
  const s = host.stats()
  t.ok(s.disposeFailures - before.disposeFailures <= s.modulesRecycled - before.modulesRecycled, `every failed dispose was followed by a rebuilt module: ${JSON.stringify(s)}`)
  await echoWorks(t, host)
  await host.unload('chain', 'evil')
})

t.test('out of memory inside a promise job nobody awaits: the full module is rebuilt', async (t) => {
  // The job's error lands in a promise nobody handles, so the call itself returns normally
  // (JavaScript semantics); what matters is that the module it filled is thrown away.
  const recycled = host.stats().modulesRecycled
  await loadOk(t, host, 'jobbomb', 'evil', 'export function onMessage() { Promise.resolve().then(() => { const q = []; for (;;) q.push({ i: q.length }) }); return 1 }', { timeMs: 5000 })
  const r = await host.invoke('jobbomb', 'evil', [message('t', '')])
  t.ok(r.ok || r.error.code === 'memory', JSON.stringify(r))
  t.ok(host.stats().modulesRecycled > recycled, 'the module was recycled')
  await echoWorks(t, host)
  const again = await host.invoke('jobbomb', 'evil', [message('t', '')])
  t.ok(again.ok || again.error.code === 'memory', 'the rebuilt module runs the rule again')
  await host.unload('jobbomb', 'evil')
})

t.test('a publish flood past maxPublishes fails the call and publishes nothing', async (t) => {
  await attack(t, "for (let i = 0; i < 1000; i++) publish('flood', 'x')", 'limit', /more than 10 publishes/, { maxPublishes: 10 })
  await loadOk(t, host, 'flood', 'sly', "export function onMessage() { try { for (;;) publish('t', 'x') } catch {} return 'done' }", { maxPublishes: 5 })
  const sly = await host.invoke('flood', 'sly', [message('a', '')])
  t.equal(sly.ok && sly.effects.length, 5, 'catching the error does not get a rule past the limit')
  await host.unload('flood', 'sly')
})

t.test('publishing to a wildcard topic is refused', async (t) => {
  await attack(t, "publish('a/#', 'x')", 'runtime', /must not contain/)
})

t.test('require is not there', async (t) => {
  await attack(t, "return require('fs')", 'runtime', /ReferenceError: .*require/)
})

t.test('process is not there', async (t) => {
  await attack(t, 'return process.env', 'runtime', /ReferenceError: .*process/)
})

t.test('dynamic import is refused', async (t) => {
  await loadOk(t, host, 'importer', 'dyn', "export async function onMessage() { return (await import('fs')).readFileSync('/etc/passwd', 'utf8') }")
  const r = await host.invoke('importer', 'dyn', [message('a', '')])
  t.equal(failedWith(r), 'runtime')
  t.match(errorText(r), /cannot import modules/)
  await host.unload('importer', 'dyn')
})

t.test("globalThis.constructor reaches no code generation", async (t) => {
  await attack(t, "return globalThis.constructor.constructor('return process')()", 'runtime', /EvalError: rules cannot compile code/)
})

t.test("a host function's constructor reaches no code generation", async (t) => {
  await attack(t, "return publish.constructor('return process')()", 'runtime', /EvalError: rules cannot compile code/)
  await attack(t, "return kv.get.constructor('return this')()", 'runtime', /EvalError/)
  await attack(t, "return Object.getPrototypeOf(async function () {}).constructor('return 1')()", 'runtime', /EvalError/)
  await attack(t, "return Function('return 1')()", 'runtime', /EvalError/)
  await attack(t, "return eval('1 + 1')", 'runtime', /ReferenceError: .*eval/)
})

t.test('prototype pollution through the objects handed in fails and affects nothing after', async (t) => {
  await attack(t, "msg.__proto__.polluted = 'yes'", 'runtime', /TypeError/)
  await attack(t, "Object.getPrototypeOf(msg).toJSON = () => 'hijacked'", 'runtime', /TypeError/)
  await attack(t, 'msg.constructor.prototype.polluted = 1', 'runtime', /TypeError/)
  await attack(t, 'Array.prototype.push = () => 0', 'runtime', /TypeError/)
  await attack(t, "Object.defineProperty(Object.prototype, 'then', { value: 1 })", 'runtime', /TypeError/)
  await attack(t, 'JSON.stringify = () => "{}"', 'runtime', /TypeError/)
  const probe = `
export function onMessage(msg) {
  if (msg.payload === 'pollute') { try { msg.__proto__.polluted = 'yes' } catch {} try { Object.prototype.x = 1 } catch {} return 'tried' }
  return [msg.polluted ?? null, ({}).x ?? null, typeof Object.prototype.toJSON]
}`
  await loadOk(t, host, 'pollution', 'a', probe)
  await loadOk(t, host, 'pollution', 'b', probe)
  await host.invoke('pollution', 'a', [message('t', 'pollute')])
  const same = await host.invoke('pollution', 'a', [message('t', 'look')])
  const other = await host.invoke('pollution', 'b', [message('t', 'look')])
  t.equal(same.ok && same.returned, '[null,null,"undefined"]', 'not in the next invocation')
  t.equal(other.ok && other.returned, '[null,null,"undefined"]', 'not in another rule')
  await host.unload('pollution', 'a')
  await host.unload('pollution', 'b')
})

t.test('kv floods and oversize keys or values fail the call with a clear error', async (t) => {
  await attack(t, "for (let i = 0; ; i++) kv.set('k' + i, 'x'.repeat(60000))", 'limit', /more than 1048576 bytes stored/)
  await attack(t, "kv.set('k'.repeat(300), 'v')", 'limit', /key is longer than 256 bytes/)
  await attack(t, "kv.set('k', 'é'.repeat(40000))", 'limit', /value is larger than 65536 bytes/)
  await attack(t, "kv.set('', 'v')", 'runtime', /non-empty string/)
  // The account total is the host's check: the store already holds almost 1 MB.
  await loadOk(t, host, 'hoarder', 'fill', "export function onMessage(msg) { kv.set('more-' + msg.payload, 'x'.repeat(1000)) }")
  host.updateKv('hoarder', { big1: 'x'.repeat(60000) })
  for (let i = 0; i < 16; i++) host.updateKv('hoarder', { [`big-${i}`]: 'y'.repeat(64000) })
  const r = await host.invoke('hoarder', 'fill', [message('t', '1')])
  t.equal(failedWith(r), 'limit')
  t.match(errorText(r), /the account would store \d+ bytes, more than its limit of 1048576/)
  await host.unload('hoarder', 'fill')
})

t.test('thrown oddities: huge messages are cut, hostile values cannot hang the host', async (t) => {
  await attack(t, "throw new Error('x'.repeat(1000000))", 'runtime', /^Error: x{1000} \(at evil\.js:2:\d+\)$/)
  await attack(t, "throw { message: 'plain object' }", 'runtime', /uncaught \[object Object\]/)
  await attack(t, 'throw { toString() { for (;;) {} } }', 'timeout', /time limit/)
  await attack(t, 'throw new Proxy({}, { get() { for (;;) {} } })', 'timeout', /time limit/)
  await attack(t, 'return { toJSON() { for (;;) {} } }', 'timeout', /time limit/)
  await attack(t, 'return 10n', 'runtime', /TypeError/)
})

t.test('after all of it: no worker restart, every sandbox disposes cleanly', async (t) => {
  const s = host.stats()
  t.equal(s.workerRestarts, 0, 'nothing needed the watchdog')
  t.ok(s.modulesRecycled > 0, `modules recycled: ${s.modulesRecycled}`)
  await echoWorks(t, host)
  // Only an interrupted promise chain may fail a dispose (QuickJS leaks it), and each one was
  // followed by a rebuilt module; what runs now disposes cleanly.
  t.ok(s.disposeFailures <= s.modulesRecycled, `failed disposes ${s.disposeFailures}, modules rebuilt ${s.modulesRecycled}`)
  t.same(await host.dispose(), { disposeErrors: [], leaks: [] }, 'every sandbox disposes cleanly')
})
