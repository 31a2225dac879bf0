// The host's pure parts, without QuickJS: the KV cache and its limits, decoding what a batch
// returned (never trusted), failure classification and sanitizing, spec validation.
import t from 'tap'
import { wasmTrapHandlerDisabled } from '../../src/scripting/address-space.js'
import { decodeOutput } from '../../src/scripting/effects.js'
import { guestFailure, hostFailure, ruleLocation, sanitize } from '../../src/scripting/failures.js'
import { KvCache } from '../../src/scripting/kv-cache.js'
import { batchBudgetMs, heartbeatMs, KV_MAX_ACCOUNT_BYTES, resolveSpec } from '../../src/scripting/limits.js'

t.test('KvCache applies a batch of writes all or nothing, within the limits', async (t) => {
  const kv = new KvCache({ a: '1', 'é': 'ü' })
  t.equal(kv.bytes, 2 + 4, 'UTF-8 bytes of keys and values')
  t.same(kv.apply([{ kind: 'kv.set', key: 'b', value: '22' }, { kind: 'kv.delete', key: 'a' }, { kind: 'publish', topic: 't', payload: 'p', qos: 0, retain: false }]), { ok: true, value: undefined })
  t.equal(kv.get('a'), undefined)
  t.equal(kv.get('b'), '22')
  t.equal(kv.bytes, 4 + 3)
  const big = 'x'.repeat(60_000)
  const writes = Array.from({ length: 20 }, (_, i) => ({ kind: 'kv.set' as const, key: `k${i}`, value: big }))
  const over = kv.apply(writes)
  t.equal(over.ok, false, 'over the account limit')
  t.match(over.ok ? '' : over.error, /more than its limit of 1048576/)
  t.equal(kv.get('k0'), undefined, 'nothing of the failed batch was applied')
  t.match(kv.apply([{ kind: 'kv.set', key: 'k'.repeat(257), value: '' }]), { ok: false, error: /key is longer than 256 bytes/ })
  t.match(kv.apply([{ kind: 'kv.set', key: 'k', value: 'v'.repeat(65_537) }]), { ok: false, error: /value is larger than 65536 bytes/ })
  t.equal(kv.apply([{ kind: 'kv.set', key: 'same', value: big }, { kind: 'kv.set', key: 'same', value: 'small' }]).ok, true, 'only the final value of a key counts')
  t.equal(kv.get('same'), 'small')
})

t.test('KvCache: an account over its limit (seeded from outside) may still shrink', async (t) => {
  const seed: Record<string, string> = {}
  for (let i = 0; i < 20; i++) seed[`k${i}`] = 'x'.repeat(60_000)
  const kv = new KvCache(seed)
  t.ok(kv.bytes > KV_MAX_ACCOUNT_BYTES)
  t.equal(kv.apply([{ kind: 'kv.delete', key: 'k0' }]).ok, true)
  t.equal(kv.apply([{ kind: 'kv.set', key: 'new', value: 'v' }]).ok, false)
  kv.update([['k1', null], ['k2', 'short']])
  t.equal(kv.get('k1'), undefined)
  t.equal(kv.get('k2'), 'short')
})

t.test('decodeOutput accepts only well-formed effects', async (t) => {
  const ok = decodeOutput(JSON.stringify({ e: [[0, 'a/b', 'p', 1, true], [1, 'k', 'v'], [2, 'k'], [3, 'warn', 'm']], r: '"x"' }), 'r.js', 10)
  t.same(ok, {
    ok: true,
    value: {
      effects: [
        { kind: 'publish', topic: 'a/b', payload: 'p', qos: 1, retain: true },
        { kind: 'kv.set', key: 'k', value: 'v' },
        { kind: 'kv.delete', key: 'k' },
        { kind: 'log', level: 'warn', message: 'm' },
      ],
      returned: '"x"',
    },
  })
  t.same(decodeOutput('{"e":[],"r":null}', 'r.js', 10), { ok: true, value: { effects: [], returned: undefined } })
  const corrupt = [
    'not json',
    '[]',
    '{"e":[[0,"a/+","p",0,false]],"r":null}',
    '{"e":[[0,"","p",0,false]],"r":null}',
    '{"e":[[0,"t","p",3,false]],"r":null}',
    '{"e":[[0,"t",{},0,false]],"r":null}',
    '{"e":[[1,"",""]],"r":null}',
    '{"e":[[3,"debug","m"]],"r":null}',
    '{"e":[[9]],"r":null}',
    '{"e":[],"r":5}',
    '{"x":[1,2,3]}',
  ]
  for (const json of corrupt) t.match(decodeOutput(json, 'r.js', 10), { ok: false, error: { code: 'runtime', message: /corrupted/ } }, json)
  const flood = JSON.stringify({ e: Array.from({ length: 4 }, () => [0, 't', 'p', 0, false]), r: null })
  t.match(decodeOutput(flood, 'r.js', 3), { ok: false, error: { code: 'limit' } }, 'the host counts publishes too')
  t.match(decodeOutput(JSON.stringify({ x: ['TypeError', 'bad', '    at f (r.js:3:7)\n    at batch (perch:host:9:1)\n'] }), 'r.js', 1), {
    ok: false,
    error: { code: 'runtime', message: 'TypeError: bad (at r.js:3:7)' },
  })
})

t.test('failures: classification, rule locations, sanitizing', async (t) => {
  t.match(guestFailure('InternalError', 'out of memory', '', 'r.js'), { code: 'memory', poison: 'module' })
  t.match(guestFailure('InternalError', 'stack overflow', '', 'r.js'), { code: 'stack', poison: 'module' })
  t.match(guestFailure('SyntaxError', 'stack overflow', '', 'r.js'), { code: 'stack', poison: 'module' }, 'JSON.parse reports its overflow as a SyntaxError')
  t.match(guestFailure('LimitError', 'publish: too many', '', 'r.js'), { code: 'limit', poison: 'none' })
  t.match(guestFailure('Error', 'out of memory soon', '', 'r.js'), { code: 'runtime' })
  t.same(ruleLocation('    at g (other.js:1:1)\n    at f (calc.js:12:34)\n', 'calc.js'), { line: 12, column: 34 })
  t.same(ruleLocation('    at calc.js:2:11\n', 'calc.js'), { line: 2, column: 11 })
  t.equal(ruleLocation('    at f (xcalc.js:2:11)\n', 'calc.js'), undefined, 'a file merely ending in the name is not the rule')
  t.equal(sanitize('see file:///work/main/src/x.ts:3 and /opt/perch/node_modules/q/index.js now'), 'see <host> and <host> now')
  t.equal(sanitize('publish to /A/sensors/t failed'), 'publish to /A/sensors/t failed', 'topics stay readable')
  t.ok(sanitize('x'.repeat(5000)).length < 1300)
  t.match(hostFailure(new RangeError('Maximum call stack size exceeded')), { code: 'stack', poison: 'module' })
  t.match(hostFailure(new Error('/secret/path.js exploded')), { code: 'crashed', message: /^the sandbox failed/ })
})

t.test('specs are validated and limits get their defaults', async (t) => {
  const spec = resolveSpec({ account: 'a', name: 'r', source: '', limits: { timeMs: 50, maxPublishes: 100 } })
  t.same(spec, { ok: true, value: { account: 'a', name: 'r', source: '', limits: { timeMs: 50, maxPublishes: 100, memoryMb: 32 } } })
  for (const name of ['', '.hidden', '-x', 'a/b', 'a b', 'x'.repeat(129)]) {
    t.match(resolveSpec({ account: 'a', name, source: '', limits: { timeMs: 50, maxPublishes: 1 } }), { ok: false, error: { code: 'invalid' } }, JSON.stringify(name))
  }
  t.match(resolveSpec({ account: '', name: 'r', source: '', limits: { timeMs: 50, maxPublishes: 1 } }), { ok: false })
  t.match(resolveSpec({ account: 'a', name: 'r', source: 'x'.repeat(300_000), limits: { timeMs: 50, maxPublishes: 1 } }), { ok: false, error: { message: /larger than/ } })
  t.match(resolveSpec({ account: 'a', name: 'r', source: '', limits: { timeMs: 1.5, maxPublishes: 1 } }), { ok: false })
  t.equal(batchBudgetMs(50, 1, 250), 50)
  t.equal(batchBudgetMs(50, 100, 250), 250, 'a batch is capped well inside the heartbeat')
  t.equal(heartbeatMs(1000, 50), 1000)
  t.equal(heartbeatMs(1000, 2000), 8000, 'never below 4x the largest time limit')
})

t.test('the launcher flag is recognised on the command line and in NODE_OPTIONS', async (t) => {
  t.equal(wasmTrapHandlerDisabled(['--disable-wasm-trap-handler'], ''), true)
  t.equal(wasmTrapHandlerDisabled([], '--max-old-space-size=256 --disable-wasm-trap-handler'), true)
  t.equal(wasmTrapHandlerDisabled(['--enable-source-maps'], '--disable-wasm-trap-handlers'), false)
})

t.test('the factory signals a module build, which the watchdog gives ten heartbeats', async (t) => {
  const { QuickJSFactory } = await import('../../src/scripting/quickjs.js')
  const seen: boolean[] = []
  const factory = new QuickJSFactory('release', (building) => seen.push(building))
  const built = await factory.newAccountModule(16)
  t.same(seen, [true, false], 'raised for the build, lowered after it')
  const rt = built.qjs.newRuntime()
  t.ok(rt.alive, 'the module works')
  rt.dispose()
  // A memory no process could reserve fails the build: the signal is still lowered.
  await t.rejects(factory.newAccountModule(1024 * 1024))
  t.same(seen, [true, false, true, false])
})
