// The device loader: every bundled example loads, defaults are filled as device-config.ts
// documents them, and each kind of bad file is refused with its file, key and reason while the
// good files next to it still load.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { boardForModel, bundledDeviceDir, detectBoard } from '../../src/bridges/boards.js'
import { loadDevicePaths, loadDevicesDir } from '../../src/bridges/config-loader.js'
import { regexGroups, topicProblem } from '../../src/bridges/device-checks.js'

const work = mkdtempSync(join(tmpdir(), 'perch-devices-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

let n = 0
/** A fresh devices directory with these files (name -> JSON value or raw text). */
function devicesDir(files: Record<string, unknown>): string {
  const dir = join(work, `d${n++}`)
  mkdirSync(dir)
  for (const [name, body] of Object.entries(files)) {
    const path = join(dir, name)
    mkdirSync(join(path, '..'), { recursive: true })
    writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body))
  }
  return dir
}

const serial = (extra: Record<string, unknown> = {}) => ({ kind: 'serial', account: 'farm', path: '/dev/ttyUSB0', ...extra })
const gpio = (extra: Record<string, unknown> = {}) => ({ kind: 'gpio', account: 'farm', board: 'raspberry-pi-4', ...extra })

t.test('every bundled example loads without a problem', async (t) => {
  const r = loadDevicesDir(join(bundledDeviceDir(), 'examples'), { board: 'generic-x86' })
  t.same(r.errors, [])
  t.same(r.devices.map((d) => `${d.kind}:${d.name}`).sort(), ['gpio:barn', 'onewire:tank', 'serial:soil-probe', 'serial:weather-station'])
  t.same([...r.boards.keys()].sort(), ['generic-x86', 'raspberry-pi-4', 'raspberry-pi-5', 'raspberry-pi-zero-2-w'])
  t.same(r.boards.get('raspberry-pi-5')?.gpio?.chipLabels, ['pinctrl-rp1'])
  t.same(r.boards.get('raspberry-pi-zero-2-w')?.gpio?.chipLabels, ['pinctrl-bcm2835'])
  t.equal(r.boards.get('generic-x86')?.gpio, undefined)
  t.same(r.boards.get('raspberry-pi-4')?.gpio?.pins, Array.from({ length: 26 }, (_, i) => i + 2))
})

t.test('a minimal serial file gets every default', async (t) => {
  const dir = devicesDir({ 'meter.json': serial() })
  const r = loadDevicesDir(dir, { board: 'generic-x86' })
  t.same(r.errors, [])
  t.same(r.devices, [
    {
      name: 'meter',
      account: 'farm',
      enabled: true,
      file: join(dir, 'meter.json'),
      kind: 'serial',
      path: '/dev/ttyUSB0',
      baudRate: 9600,
      dataBits: 8,
      parity: 'none',
      stopBits: 1,
      framing: { type: 'lines', delimiter: '\n', field: 'value' },
      topic: '/farm/sensors/meter/{field}',
      payload: 'value',
      fields: {},
      publish: { qos: 0, retain: false, onChange: false, minIntervalMs: 0 },
      command: undefined,
      reconnect: { initialMs: 100, maxMs: 10_000 },
    },
  ])
})

t.test('gpio and 1-Wire defaults; the board comes from the options unless the file names one', async (t) => {
  const dir = devicesDir({
    'door.json': { kind: 'gpio', account: 'farm', inputs: [{ name: 'door', pin: 17 }], outputs: [{ name: 'pump', pin: 27 }] },
    'tank.json': { kind: 'onewire', account: 'farm', name: 'tank-1' },
  })
  const r = loadDevicesDir(dir, { board: 'raspberry-pi-5' })
  t.same(r.errors, [])
  t.match(r.devices[0], {
    kind: 'gpio',
    board: 'raspberry-pi-5',
    inputs: [{ name: 'door', pin: 17, edge: 'both', debounceMs: 0, activeLow: false, topic: '/farm/sensors/door/door' }],
    outputs: [{ name: 'pump', pin: 27, activeLow: false, initial: 0, topic: '/farm/actuators/pump/set' }],
    publish: { qos: 0, retain: false, onChange: false, minIntervalMs: 0 },
  })
  t.match(r.devices[1], { kind: 'onewire', name: 'tank-1', root: '/sys/bus/w1/devices', intervalMs: 10_000, sensors: [], topic: '/farm/sensors/tank-1/{name}', payload: 'value' })
})

t.test('a serial command gets its topic, newline and encoding; a hex command appends nothing', async (t) => {
  const dir = devicesDir({ 'a.json': serial({ command: {} }), 'b.json': serial({ path: '/dev/ttyUSB1', command: { encoding: 'hex', topic: '/farm/x/{device}' } }) })
  const r = loadDevicesDir(dir, { board: 'generic-x86' })
  t.same(r.errors, [])
  t.same(
    r.devices.map((d) => (d.kind === 'serial' ? d.command : undefined)),
    [
      { topic: '/farm/actuators/a/write', append: '\n', encoding: 'utf8' },
      { topic: '/farm/x/b', append: '', encoding: 'hex' },
    ],
  )
})

/** Loads one bad file beside a good one: the good one still loads; returns the bad one's errors. */
function refused(t: Test, body: unknown, options: { name?: string; board?: string; extra?: Record<string, unknown> } = {}) {
  const name = options.name ?? 'bad.json'
  const dir = devicesDir({ 'good.json': serial({ path: '/dev/ttyGOOD' }), [name]: body, ...options.extra })
  const r = loadDevicesDir(dir, { board: options.board ?? 'generic-x86' })
  t.ok(
    r.devices.some((d) => d.name === 'good'),
    'the good file still loads',
  )
  t.notOk(
    r.devices.some((d) => d.file === join(dir, name)),
    'the bad file is not loaded',
  )
  for (const e of r.errors) t.equal(e.file, join(dir, name), `the error names the file: ${e.key}: ${e.reason}`)
  return r.errors
}

t.test('bad files name the file, the key and the reason', async (t) => {
  t.match(refused(t, { kind: 'modbus', account: 'farm' }), [{ key: 'kind', reason: /must be one of serial, gpio, onewire, not "modbus"/ }], 'wrong kind')
  t.match(refused(t, { account: 'farm', path: '/dev/x' }), [{ key: 'kind', reason: /is required/ }], 'no kind')
  t.match(refused(t, { kind: 'serial', path: '/dev/x' }), [{ key: 'account', reason: 'is required' }], 'missing account')
  t.match(refused(t, serial({ account: 'bad account' })), [{ key: 'account', reason: /pattern/ }], 'account id with a space')
  t.match(refused(t, serial({ account: 'a'.repeat(65) })), [{ key: 'account', reason: /pattern/ }], 'account id too long')
  t.match(refused(t, serial({ framing: { type: 'regex', pattern: '^T=(?<t>[0-9' } })), [{ key: 'framing.pattern', reason: /does not compile/ }], 'bad regex')
  t.match(refused(t, serial({ framing: { type: 'regex', pattern: '^T=([0-9.]+)$' } })), [{ key: 'framing.pattern', reason: /no named groups/ }], 'regex without named groups')
  t.match(refused(t, serial({ topic: '/other/sensors/{device}/{field}' })), [{ key: 'topic', reason: /outside the account's namespace \/farm\// }], 'topic outside the account')
  t.match(refused(t, serial({ topic: 'farm/sensors/{field}' })), [{ key: 'topic', reason: /pattern/ }], 'relative topic')
  t.match(refused(t, serial({ topic: '/farm/{feild}' })), [{ key: 'topic', reason: /unknown placeholder \{feild\}/ }], 'placeholder typo')
  t.match(refused(t, serial({ command: { topic: '/ops/pump' } })), [{ key: 'command.topic', reason: /outside/ }], 'command topic outside')
  t.match(refused(t, gpio({ inputs: [{ name: 'x', pin: 1, topic: '/farm/+/x' }] })), [{ key: 'inputs.0.topic', reason: /pattern/ }], 'wildcard topic')
  t.match(
    refused(t, serial({ framing: { type: 'binary', length: 6, header: 'aa55', fields: [{ name: 't', offset: 2, type: 'int16be' }, { name: 'w', offset: 4, type: 'uint32le' }] } })),
    [{ key: 'framing.fields.1.offset', reason: /uint32le at offset 4 ends at byte 8, beyond the 6-byte frame/ }],
    'binary field beyond the frame',
  )
  t.match(refused(t, serial({ baud: 9600 })), [{ key: '(root)', reason: /unknown key "baud"/ }], 'unknown key')
  t.match(refused(t, serial({ baudRate: '9600' })), [{ key: 'baudRate', reason: /integer/ }], 'wrong type')
  t.match(refused(t, '{"kind": "serial",'), [{ key: '(root)', reason: /not valid JSON/ }], 'not JSON')
  t.match(refused(t, [1, 2]), [{ key: '(root)', reason: /object/ }], 'not an object')
  t.match(refused(t, serial(), { name: 'my device.json' }), [{ key: 'name', reason: /rename the file or give "name"/ }], 'file name that is no device name')
})

t.test('GPIO: unknown boards, boards without GPIO, pins off the header or used twice', async (t) => {
  t.match(refused(t, gpio({ board: 'raspberry-pi-9', inputs: [{ name: 'a', pin: 17 }] })), [{ key: 'board', reason: /unknown board "raspberry-pi-9" \(known: generic-x86, raspberry-pi-4/ }])
  t.match(refused(t, { kind: 'gpio', account: 'farm', inputs: [{ name: 'a', pin: 17 }] }), [{ key: 'board', reason: /"generic-x86" has no GPIO header/ }], 'the default board has no GPIO')
  t.match(refused(t, gpio({ inputs: [{ name: 'a', pin: 17 }], outputs: [{ name: 'b', pin: 40 }] })), [{ key: 'outputs.0.pin', reason: /GPIO 40 is not on the raspberry-pi-4 header/ }])
  t.match(refused(t, gpio({ inputs: [{ name: 'a', pin: 17 }], outputs: [{ name: 'b', pin: 17 }] })), [{ key: 'outputs.0.pin', reason: /GPIO 17 is already used by "a"/ }])
  t.match(refused(t, gpio({ inputs: [{ name: 'a', pin: 17 }, { name: 'a', pin: 18 }] })), [{ key: 'inputs.1.name', reason: /used twice/ }])
  t.match(refused(t, gpio()), [{ key: '(root)', reason: /needs "inputs" or "outputs"/ }])
  // Across files: the first file (in name order) keeps the pin.
  const errors = refused(t, gpio({ outputs: [{ name: 'relay', pin: 27 }] }), { name: 'z-relay.json', extra: { 'a-pump.json': gpio({ outputs: [{ name: 'pump', pin: 27 }] }) } })
  t.match(errors, [{ key: 'outputs.0.pin', reason: /GPIO 27 is already used by device "a-pump"/ }])
})

t.test('duplicate device names and serial paths: the first file keeps them', async (t) => {
  const dir = devicesDir({ 'a.json': serial({ name: 'meter' }), 'b.json': serial({ name: 'meter', path: '/dev/ttyUSB1' }), 'c.json': serial() })
  const r = loadDevicesDir(dir, { board: 'generic-x86' })
  t.same(
    r.devices.map((d) => d.file),
    [join(dir, 'a.json')],
  )
  t.match(r.errors, [
    { file: join(dir, 'b.json'), key: 'name', reason: `device name "meter" is already used by ${join(dir, 'a.json')}` },
    { file: join(dir, 'c.json'), key: 'path', reason: /\/dev\/ttyUSB0 is already opened by device "meter"/ },
  ])
})

t.test('a disabled device is loaded (and claims no port or pin)', async (t) => {
  const dir = devicesDir({ 'a.json': serial({ enabled: false }), 'b.json': serial() })
  const r = loadDevicesDir(dir, { board: 'generic-x86' })
  t.same(r.errors, [])
  t.same(
    r.devices.map((d) => [d.name, d.enabled]),
    [
      ['a', false],
      ['b', true],
    ],
  )
})

t.test('board profiles from the devices directory; bad profiles are reported', async (t) => {
  const dir = devicesDir({
    'boards/my-board.json': { description: 'a custom board', gpio: { chipLabels: ['gpio-sim'], pins: [0, 1, 2] }, serial: [] },
    'boards/broken.json': { description: 'x', gpio: { pins: [1] }, serial: [] },
    'sim.json': gpio({ board: 'my-board', inputs: [{ name: 'a', pin: 1 }] }),
  })
  const r = loadDevicesDir(dir, { board: 'generic-x86' })
  t.match(r.devices, [{ name: 'sim', board: 'my-board' }])
  t.match(r.errors, [{ file: join(dir, 'boards', 'broken.json'), key: 'gpio.chipLabels', reason: 'is required' }])
})

t.test('a missing directory is no devices and no error; a missing path given explicitly is an error', async (t) => {
  const r = loadDevicesDir(join(work, 'nowhere'), { board: 'generic-x86' })
  t.same([r.devices, r.errors], [[], []])
  const p = loadDevicePaths([join(work, 'nowhere.json')], { board: 'generic-x86' })
  t.match(p.errors, [{ file: join(work, 'nowhere.json'), key: '(root)', reason: 'no such file or directory' }])
})

t.test('board detection from the device-tree model', async (t) => {
  t.equal(boardForModel('Raspberry Pi 4 Model B Rev 1.4\0'), 'raspberry-pi-4')
  t.equal(boardForModel('Raspberry Pi 400 Rev 1.0'), 'raspberry-pi-4')
  t.equal(boardForModel('Raspberry Pi 5 Model B Rev 1.0'), 'raspberry-pi-5')
  t.equal(boardForModel('Raspberry Pi Zero 2 W Rev 1.0'), 'raspberry-pi-zero-2-w')
  t.equal(boardForModel(undefined), 'generic-x86')
  t.equal(boardForModel('Some Other Board'), 'generic-x86')
  const model = join(work, 'model')
  writeFileSync(model, 'Raspberry Pi 5 Model B Rev 1.0\0')
  t.same(detectBoard(model), { board: 'raspberry-pi-5', model: 'Raspberry Pi 5 Model B Rev 1.0' })
  t.same(detectBoard(join(work, 'no-model')), { board: 'generic-x86', model: undefined })
})

t.test('regex groups and topic checks', async (t) => {
  t.same(regexGroups('^T=(?<temperature>[0-9.]+) H=(?<humidity>[0-9]+)$'), { ok: true, groups: ['temperature', 'humidity'] })
  t.same(regexGroups('(a)|(b)'), { ok: true, groups: [] })
  t.match(regexGroups('(?<a>'), { ok: false })
  t.equal(topicProblem('/farm/sensors/x', 'farm', []), undefined)
  t.match(topicProblem('/farm/', 'farm', []), /outside/)
  t.match(topicProblem('/farmer/x', 'farm', []), /outside/)
  t.match(topicProblem('/farm//x', 'farm', []), /empty level/)
})
