// Run by address-space.test.ts in a child process under `ulimit -v`: loads an echo rule for N
// accounts (one WASM module each), invokes each once, and prints one JSON line with what happened.
import { SandboxHost } from '../../src/scripting/index.js'

const accounts = Number(process.argv[2] ?? 200)
// A failing WebAssembly.Memory() takes ~100 ms of V8 retries and GCs, much longer on a machine
// busy with other tests: patience, since the watchdog is not what this is about.
const host = await SandboxHost.start({ now: () => 0, heartbeatMs: 15_000 })
let loaded = 0
let answered = 0
const errors: string[] = []
for (let i = 0; i < accounts; i++) {
  const r = await host.load({ account: `account-${i}`, name: 'echo', source: 'export function onMessage(m) { return m.payload }', limits: { timeMs: 50, maxPublishes: 1 } })
  if (!r.ok) {
    errors.push(`${r.error.code}: ${r.error.message}`)
    break
  }
  loaded++
}
for (let i = 0; i < loaded; i++) {
  const r = await host.invoke(`account-${i}`, 'echo', [{ kind: 'message', topic: 't', payload: `p${i}` }])
  if (r.ok && r.returned === `"p${i}"`) answered++
  else errors.push(JSON.stringify(r))
}
const report = await host.dispose()
process.stdout.write(`${JSON.stringify({ loaded, answered, errors: errors.slice(0, 3), report })}\n`)
