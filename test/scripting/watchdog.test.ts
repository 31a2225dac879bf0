// The last resort: a single native built-in that ignores every deadline. The host's watchdog
// terminates the worker, the call that hung fails with `crashed`, everything else is served by a
// new worker that has every rule loaded again.
import t from 'tap'
import { disposeClean, ECHO, echoWorks, failedWith, loadOk, message, startHost } from './fixtures.js'

// One native call of ~1-3 s on this class of machine (a 100 MB string built inside Array.join,
// which never calls the interrupt handler). A big module, so memory is not what stops it.
const STUCK = "new Array(5e7).join('ab').length"
const BIG = { timeMs: 20, memoryMb: 1024 }

const store = new Map<string, Record<string, string>>()
// The watchdog's patience: 400 ms (above 4x the time limit and 2x the load budget), well below the stuck call.
const host = await startHost({ heartbeatMs: 400, kvSnapshot: (account) => store.get(account) ?? {} })

t.teardown(async () => {
  await host.dispose()
})

t.test('a stuck native call: the worker is replaced, only the stuck call fails', async (t) => {
  await loadOk(t, host, 'bystander', 'echo', ECHO)
  await loadOk(t, host, 'heavy', 'stuck', `export function onMessage(msg) { return ${STUCK} }`, BIG)
  await loadOk(t, host, 'heavy', 'light', 'export function onMessage(msg) { return msg.payload }')
  const stuck = host.invoke('heavy', 'stuck', [message('t', '')])
  // Sent in the same tick: queued behind the stuck call in the same worker.
  const behind = [host.invoke('bystander', 'echo', [message('a', 'x')]), host.invoke('heavy', 'light', [message('b', 'y')])]
  const r = await stuck
  t.equal(failedWith(r), 'crashed')
  t.match(r.ok ? '' : r.error.message, /restarted/)
  const [echo, light] = await Promise.all(behind)
  t.equal(echo?.ok && echo.returned, '"x"', 'a call queued behind it is answered by the new worker')
  t.equal(light?.ok && light.returned, '"y"', 'so is one of the same account')
  const s = host.stats()
  t.equal(s.workerRestarts, 1)
  t.equal(s.rules, 3, 'every rule is loaded again')
  await echoWorks(t, host)
})

t.test('a load that hangs the worker fails and is not kept; the previous version runs on', async (t) => {
  await loadOk(t, host, 'loader', 'rule', 'export function onMessage() { return "v1" }')
  const r = await host.load({ account: 'loader', name: 'rule', source: `${STUCK}\nexport function onMessage() { return "v2" }`, limits: { ...BIG, maxPublishes: 1 } })
  t.equal(r.ok ? 'ok' : r.error.code, 'invalid')
  t.match(r.ok ? '' : r.error.message, /crashed while loading/)
  const v = await host.invoke('loader', 'rule', [message('t', '')])
  t.equal(v.ok && v.returned, '"v1"')
  await echoWorks(t, host)
})

t.test('a rule that hangs only when loaded again is dropped, so restarts cannot loop', async (t) => {
  await loadOk(t, host, 'trap', 'sleeper', `if (kv.get('armed') === 'yes') ${STUCK}\nexport function onMessage() { return 'awake' }`, BIG)
  // The store changes while it runs; a restart reloads it with the new store, and it hangs.
  store.set('trap', { armed: 'yes' })
  const restarts = host.stats().workerRestarts
  t.equal(failedWith(await host.invoke('heavy', 'stuck', [message('t', '')])), 'crashed')
  await echoWorks(t, host)
  const s = host.stats()
  t.equal(s.workerRestarts, restarts + 2, 'one restart for the stuck call, one for the reload that hung')
  t.equal(s.rulesDropped, 1)
  t.equal(failedWith(await host.invoke('trap', 'sleeper', [message('t', '')])), 'no-handler', 'the rule is gone')
  const light = await host.invoke('heavy', 'light', [message('t', 'still')])
  t.equal(light.ok && light.returned, '"still"')
})

t.test('the replacement worker disposes cleanly', async (t) => {
  await host.unload('heavy', 'stuck')
  await disposeClean(t, host)
})
