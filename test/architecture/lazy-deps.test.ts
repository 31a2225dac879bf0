// The optional dependencies load only when the configuration uses them: each holds resident
// memory that a small board without that feature should not pay (PERFORMANCE.md, idle RSS).
// perch runs in a child process whose module resolutions a loader hook writes to a file; the
// default configuration must resolve none of these packages, and a configuration using every
// feature must resolve each of them (which also shows that the hook sees them).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { spawnTool } from '../helpers/cli.js'
import { until } from '../helpers/clients.js'
import { BIN, cleanEnv } from '../helpers/perch-bin.js'

/** Loaded only for: a ws listener, JWT logins, http, sync or mysql-users, a serial device, a GPIO device, a rule. */
const OPTIONAL = ['ws', 'jose', 'prom-client', 'mysql2', 'serialport', 'onoff', 'quickjs-emscripten-core']

const HOOKS = `import { appendFileSync } from 'node:fs'
let file
export function initialize(data) { file = data.file }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context)
  appendFileSync(file, resolved.url + '\\n')
  return resolved
}
`

function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-lazy-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Starts perch with `config`, waits for perch.started and `events`, stops it and returns the packages it resolved. */
async function packagesLoaded(t: Test, dir: string, config: Record<string, unknown>, events: readonly string[] = []): Promise<Set<string>> {
  const log = join(dir, 'resolved.txt')
  writeFileSync(log, '')
  writeFileSync(join(dir, 'hooks.mjs'), HOOKS)
  const register = `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)}, { data: { file: ${JSON.stringify(log)} } })\n`
  writeFileSync(join(dir, 'register.mjs'), register)
  writeFileSync(join(dir, 'perch.json'), JSON.stringify(config))
  const args = ['--disable-wasm-trap-handler', '--import', pathToFileURL(join(dir, 'register.mjs')).href, BIN, 'start']
  const perch = spawnTool(t, process.execPath, [...args, '--config', join(dir, 'perch.json'), '--data-dir', join(dir, 'data')], {
    env: cleanEnv(),
    timeoutMs: 60_000,
  })
  const seen = (event: string): boolean => perch.stdout().includes(`"event":"${event}"`)
  for (const event of ['perch.started', ...events]) {
    await until(() => seen(event) || perch.exited(), 30_000, event)
    t.ok(seen(event), `${event} (stderr: ${perch.stderr()})`)
  }
  perch.kill('SIGTERM')
  await perch.done
  const packages = new Set<string>()
  for (const url of readFileSync(log, 'utf8').split('\n')) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
    if (m?.[1] !== undefined) packages.add(m[1])
  }
  return packages
}

t.test('the default configuration loads none of the optional dependencies', async (t) => {
  const dir = scratch(t)
  const loaded = await packagesLoaded(t, dir, { listeners: [{ kind: 'tcp', port: 0 }] })
  t.ok(loaded.has('better-sqlite3') && loaded.has('mqtt-packet'), 'the hook sees the packages perch always needs')
  t.same(
    OPTIONAL.filter((p) => loaded.has(p)),
    [],
  )
})

t.test('a configuration that uses each feature loads its dependency', async (t) => {
  const dir = scratch(t)
  const devices = join(dir, 'devices')
  mkdirSync(devices)
  // Neither device has to work: the bridge module loads before the port or line is opened.
  writeFileSync(join(devices, 'meter.json'), JSON.stringify({ kind: 'serial', account: 'farm', path: join(dir, 'no-such-tty'), framing: { type: 'lines' } }))
  writeFileSync(join(devices, 'relay.json'), JSON.stringify({ kind: 'gpio', account: 'farm', board: 'raspberry-pi-4', outputs: [{ name: 'pump', pin: 17 }] }))
  const loaded = await packagesLoaded(t, dir, {
    listeners: [
      { kind: 'tcp', port: 0 },
      { kind: 'ws', port: 0 },
    ],
    http: { port: 0 },
    auth: { jwt: { secret: 'a secret of at least sixteen bytes' } },
    // Nothing listens on port 1: the sync's worker has loaded mysql2 once it reports failing.
    sync: { url: 'mysql://gateway:pw@127.0.0.1:1/central' },
    devices: { dir: devices },
  }, ['sync.failing'])
  t.same(
    OPTIONAL.filter((p) => !loaded.has(p)),
    ['quickjs-emscripten-core'],
    'every optional dependency but the rule sandbox (no rule runs)',
  )
})
