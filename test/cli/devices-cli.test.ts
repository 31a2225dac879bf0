// `perch devices check|list` as users run them (node bin/perch.js), and `perch start` with a
// devices directory holding good and bad files: the bad one is logged and skipped, the others
// run, and `perch devices list` shows their live state.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, runPerch, startedPort, startPerch } from '../helpers/perch-bin.js'

const work = mkdtempSync(join(tmpdir(), 'perch-devices-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

const EXAMPLES = join(ROOT, 'device', 'examples')

let n = 0
function dataDirWith(files: Record<string, unknown>): string {
  const dir = join(work, `data${n++}`)
  mkdirSync(join(dir, 'devices'), { recursive: true })
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, 'devices', name), typeof body === 'string' ? body : JSON.stringify(body))
  return dir
}

t.test('perch --help lists the devices commands; devices --help explains them', async (t) => {
  const main = await runPerch(t, work, ['--help'])
  t.match(main.stdout, /devices check\|list/)
  const help = await runPerch(t, work, ['devices', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /perch devices check \[PATH\.\.\.\]/)
  t.match(help.stdout, /perch devices list \[--json\]/)
  const none = await runPerch(t, work, ['devices'])
  t.equal(none.code, 2)
  const bad = await runPerch(t, work, ['devices', 'frob'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /unknown command "frob"/)
  const opt = await runPerch(t, work, ['devices', 'list', '--frob'])
  t.equal(opt.code, 2)
})

t.test('check: the bundled examples pass with one line each', async (t) => {
  const r = await runPerch(t, work, ['devices', 'check', EXAMPLES])
  t.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  t.equal(lines.length, 4)
  for (const line of lines) t.match(line, /^ok {2}.*\.json: (serial|gpio|onewire) "/)
  t.match(r.stdout, /gpio "barn" as farm on raspberry-pi-4: door \(pin 17\) -> \/farm\/sensors\/barn\/door, pump \(pin 27\) <- \/farm\/actuators\/pump\/set/)
  t.match(r.stdout, /serial "weather-station" as farm: .* at 9600 baud, regex framing -> \/farm\/sensors\/weather-station\/\{field\}/)
})

t.test('check: bad files exit 1 naming file, key and reason; good files are still listed', async (t) => {
  const dir = dataDirWith({
    'good.json': { kind: 'serial', account: 'farm', path: '/dev/ttyUSB0' },
    'regex.json': { kind: 'serial', account: 'farm', path: '/dev/ttyUSB1', framing: { type: 'regex', pattern: '(?<t>[0-9' } },
    'outside.json': { kind: 'onewire', account: 'farm', topic: '/barn/t/{name}' },
    'pins.json': { kind: 'gpio', account: 'farm', board: 'raspberry-pi-5', outputs: [{ name: 'x', pin: 30 }] },
  })
  const devices = join(dir, 'devices')
  const r = await runPerch(t, work, ['devices', 'check', '--data-dir', dir])
  t.equal(r.code, 1)
  t.match(r.stderr, `${join(devices, 'regex.json')}: framing.pattern: does not compile`)
  t.match(r.stderr, `${join(devices, 'outside.json')}: topic: "/barn/t/{name}" is outside the account's namespace /farm/`)
  t.match(r.stderr, `${join(devices, 'pins.json')}: outputs.0.pin: GPIO 30 is not on the raspberry-pi-5 header`)
  t.match(r.stderr, /3 bad files, 1 good/)
  t.match(r.stdout, `ok  ${join(devices, 'good.json')}: serial "good"`)
  // Files given by path; --board supplies the board of a GPIO file that names none.
  const gpio = join(work, 'door.json')
  writeFileSync(gpio, JSON.stringify({ kind: 'gpio', account: 'farm', inputs: [{ name: 'door', pin: 17 }] }))
  const noBoard = await runPerch(t, work, ['devices', 'check', gpio])
  t.equal(noBoard.code, 1)
  t.match(noBoard.stderr, /door\.json: board: board "generic-x86" has no GPIO header/)
  const one = await runPerch(t, work, ['devices', 'check', '--board', 'raspberry-pi-4', gpio, join(devices, 'good.json')])
  t.equal(one.code, 0, one.stderr)
  const missing = await runPerch(t, work, ['devices', 'check', join(work, 'nope.json')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /nope\.json: \(root\): no such file or directory/)
})

t.test('check and list: a missing devices directory is nothing to do', async (t) => {
  const dir = join(work, 'empty-data')
  const check = await runPerch(t, work, ['devices', 'check', '--data-dir', dir])
  t.equal(check.code, 0)
  t.match(check.stdout, /no devices directory at .*empty-data\/devices/)
  const list = await runPerch(t, work, ['devices', 'list', '--data-dir', dir])
  t.equal(list.code, 0)
  t.match(list.stdout, /no devices in/)
})

t.test('the devices directory comes from --config (devices.dir)', async (t) => {
  const config = join(work, 'perch.json')
  writeFileSync(config, JSON.stringify({ dataDir: join(work, 'cfg-data'), devices: { dir: EXAMPLES, board: 'raspberry-pi-4' } }))
  const r = await runPerch(t, work, ['devices', 'list', '--config', config, '--json'])
  t.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { dir: string; board: string; running: boolean; devices: { name: string }[] }
  t.equal(out.dir, EXAMPLES)
  t.equal(out.board, 'raspberry-pi-4')
  t.equal(out.running, false)
  t.same(out.devices.map((d) => d.name).sort(), ['barn', 'soil-probe', 'tank', 'weather-station'])
  const bad = join(work, 'bad-config.json')
  writeFileSync(bad, JSON.stringify({ devices: { dri: 'x' } }))
  const refused = await runPerch(t, work, ['devices', 'list', '--config', bad])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /devices: unknown key "dri"/)
})

const meterOffline = /meter\s+serial\s+farm\s+yes\s+offline/

t.test('perch start skips a bad device file, runs the others, and devices list shows their live state', async (t) => {
  const w1 = join(work, 'w1')
  mkdirSync(w1)
  const dir = dataDirWith({
    'meter.json': { kind: 'serial', account: 'farm', path: join(work, 'no-such-tty') },
    'tank.json': { kind: 'onewire', account: 'farm', root: w1, intervalMs: 1000 },
    'broken.json': { kind: 'serial', account: 'farm' },
  })
  const p = startPerch(t, work, ['--data-dir', dir, '--port', '0'])
  await startedPort(p)
  const invalid = p.events().filter((e) => e.event === 'device.invalid')
  t.match(invalid, [{ file: join(dir, 'devices', 'broken.json'), key: 'path', reason: 'is required' }])
  t.match(p.event('devices.loaded'), { devices: 2, invalid: 1, board: 'generic-x86' })

  // The serial bridge reports its first failed open shortly after start.
  let list = await runPerch(t, work, ['devices', 'list', '--data-dir', dir])
  for (let i = 0; i < 50 && !meterOffline.test(list.stdout); i++) {
    await new Promise((r) => setTimeout(r, 200))
    list = await runPerch(t, work, ['devices', 'list', '--data-dir', dir])
  }
  t.equal(list.code, 0)
  t.match(list.stdout, /DEVICE\s+KIND\s+ACCOUNT\s+ENABLED\s+STATE/)
  t.match(list.stdout, /meter\s+serial\s+farm\s+yes\s+offline\s+0\s+\d+\s+\d+\s+\/farm\/sensors\/meter\/\{field\}/)
  t.match(list.stdout, /tank\s+onewire\s+farm\s+yes\s+(starting|online|offline)/)
  t.match(list.stdout, /last errors:\n {2}meter: .*no-such-tty/)
  t.match(list.stdout, /invalid files \(skipped; see perch devices check\):\n {2}.*broken\.json: path: is required/)
  t.notMatch(list.stdout, /not running/)

  const json = await runPerch(t, work, ['devices', 'list', '--json', '--data-dir', dir])
  const out = JSON.parse(json.stdout) as { running: boolean; devices: { name: string; status: { state: string } | null }[] }
  t.equal(out.running, true)
  t.match(
    out.devices.find((d) => d.name === 'meter'),
    { status: { state: 'offline' } },
  )

  p.tool.kill('SIGTERM')
  t.match(await p.exited, { code: 0 })
  const after = await runPerch(t, work, ['devices', 'list', '--data-dir', dir])
  t.match(after.stdout, /perch is not running \(perch stopped at /)
  t.match(after.stdout, /meter\s+serial\s+farm\s+yes\s+-/)
})
