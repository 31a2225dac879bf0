// The same host on QuickJS's debug build (assertions + LeakSanitizer, a devDependency): after a
// mix of good and bad rules, disposing everything must leave no allocation behind in any module.
import t from 'tap'
import { ECHO, failedWith, loadOk, message, startHost } from './fixtures.js'

// The debug build runs several times slower: generous limits, except where a limit is the point.
const LIMITS = { timeMs: 1000, maxPublishes: 100 }

t.test('no runtime, context, handle or allocation outlives its rule', async (t) => {
  const host = await startHost({ variant: 'debug', heartbeatMs: 30_000, kvSnapshot: () => ({ seed: 'v' }) })
  await loadOk(t, host, 'a', 'echo', ECHO, LIMITS)
  await loadOk(
    t,
    host,
    'a',
    'busy',
    `
export async function onMessage(msg) {
  const n = Number(kv.get('n') ?? 0) + 1
  kv.set('n', String(n))
  kv.delete('seed')
  log.warn('n is', n, { deep: [1, { x: msg.topic }] })
  publish('out', { n }, { qos: 2 })
  await Promise.resolve()
  if (msg.payload === 'throw') throw new TypeError('bad ' + n)
  if (msg.payload === 'spin') for (;;) {}
  if (msg.payload === 'flood') for (;;) publish('x', 'y')
  return { n, random: Math.random() }
}
export function onTimer(t) { return t.at }
export function onEvent(e) { return e }`,
    LIMITS,
  )
  const ok = await host.invoke('a', 'busy', [message('t', 'x'), { kind: 'timer', at: 5 }, { kind: 'event', event: { e: 1 } }])
  t.ok(ok.ok, 'a mixed batch runs')
  for (const payload of ['throw', 'spin', 'flood']) {
    const r = await host.invoke('a', 'busy', [message('t', payload)])
    t.ok(!r.ok, `${payload} fails: ${failedWith(r)}`)
  }
  t.equal(failedWith(await host.invoke('a', 'echo', [{ kind: 'timer', at: 1 }])), 'no-handler')

  const bad = ["import x from 'y'\nexport function onMessage() {}", 'export function onMessage( {', "throw new Error('top')", 'export const nothing = 1', 'await null\nexport function onMessage() {}']
  for (const source of bad) {
    const r = await host.load({ account: 'b', name: 'bad', source, limits: LIMITS })
    t.equal(source.startsWith('await') ? r.ok : !r.ok, true, `load of ${JSON.stringify(source.slice(0, 24))}`)
  }
  await loadOk(t, host, 'b', 'bad', ECHO, LIMITS)
  await loadOk(t, host, 'b', 'bad', 'export function onMessage(m) { return 2 }', LIMITS)
  await host.unload('b', 'bad')
  await loadOk(t, host, 'c', 'pollute', 'export function onMessage(m) { try { m.__proto__.x = 1 } catch (e) { log.error(String(e)) } return typeof publish.constructor }', LIMITS)
  t.ok((await host.invoke('c', 'pollute', [message('t', '')])).ok)

  t.equal(host.stats().disposeFailures, 0)
  t.same(await host.dispose(), { disposeErrors: [], leaks: [] }, 'LeakSanitizer finds nothing in any module')
})
