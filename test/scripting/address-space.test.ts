// Raspberry Pi kernels with 4 KB pages give a process a 39-bit (512 GB) address space, and V8's
// WASM trap handler reserves ~10 GB per memory, so the 52nd account module failed there
// (notes/quickjs.md §2). With --disable-wasm-trap-handler a memory reserves only its maximum.
// V8 refuses that flag in a worker's execArgv: the launcher must give it to node (see
// notes/sandbox-launcher.md). Both cases run here in a child process under the same ulimit.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const CHILD = fileURLToPath(new URL('./many-accounts-child.ts', import.meta.url))
const PI_ADDRESS_SPACE_KB = 520 * 1024 * 1024 // 520 GiB, as measured on the Pi kernels

interface ChildResult {
  loaded: number
  answered: number
  errors: string[]
  report: { disposeErrors: string[]; leaks: string[] }
}

function runChild(accounts: number, nodeFlags: string[]): ChildResult {
  // The child inherits this process's flags (tap's TypeScript loader) plus the ones under test.
  const args = ['-c', `ulimit -v ${PI_ADDRESS_SPACE_KB} && exec "$@"`, 'sh', process.execPath, ...process.execArgv, ...nodeFlags, CHILD, String(accounts)]
  const r = spawnSync('bash', args, { encoding: 'utf8', timeout: 90_000 })
  const line = r.stdout.trim().split('\n').pop() ?? ''
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`child failed (${r.status}): ${r.stderr.slice(-2000)}`)
  return JSON.parse(line) as ChildResult
}

t.test('200 accounts under a 520 GiB address space with --disable-wasm-trap-handler', async (t) => {
  const r = runChild(200, ['--disable-wasm-trap-handler'])
  t.same(r, { loaded: 200, answered: 200, errors: [], report: { disposeErrors: [], leaks: [] } })
})

t.test('without the flag the same limit runs out after ~50 modules, reported as capacity', async (t) => {
  const r = runChild(200, [])
  t.ok(r.loaded < 200 && r.loaded > 0, `loaded ${r.loaded} accounts`)
  t.equal(r.answered, r.loaded, 'the accounts that did load still answer')
  t.match(r.errors[0] ?? '', /^capacity: cannot reserve memory for another account sandbox/)
  t.same(r.report, { disposeErrors: [], leaks: [] })
})
