// The systemd unit and sysusers file, checked offline (no systemd as PID 1 needed).
// `systemd-analyze verify` exits 0 even on unknown keys or values it cannot parse, so any
// output at all counts as a failure.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { systemdRoot } from '../helpers/systemd-root.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const UNIT = join(ROOT, 'systemd/perch.service')
const SYSUSERS = join(ROOT, 'systemd/perch.sysusers.conf')

function run(cmd: string, args: readonly string[]): { status: number | null; out: string; missing: boolean } {
  const r = spawnSync(cmd, [...args], { encoding: 'utf8', timeout: 30_000 })
  const missing = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, missing }
}

const analyzeMissing = run('systemd-analyze', ['--version']).missing
const noAnalyze = analyzeMissing ? 'systemd-analyze is not installed here' : false

/** A scratch root (see systemdRoot) with the unit installed in it. */
function unitRoot(t: Test, unitText: string): { root: string; unit: string } {
  const root = systemdRoot(t, ['bin/sh', 'bin/kill', 'opt/perch/current/bin/perch'])
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true })
  writeFileSync(join(root, 'etc/systemd/system/perch.service'), unitText)
  return { root, unit: '/etc/systemd/system/perch.service' }
}

t.test('systemd-analyze verify prints nothing for perch.service', { skip: noAnalyze }, async (t) => {
  const { root, unit } = unitRoot(t, readFileSync(UNIT, 'utf8'))
  const r = run('systemd-analyze', [`--root=${root}`, 'verify', unit])
  t.comment(`systemd-analyze verify: exit ${r.status}, output ${JSON.stringify(r.out)}`)
  t.equal(r.out, '', 'no output at all')
  t.equal(r.status, 0)
})

t.test('the verify check bites: a misspelt key produces output (with exit 0)', { skip: noAnalyze }, async (t) => {
  const broken = readFileSync(UNIT, 'utf8').replace('MemoryMax=', 'MemroyMax=')
  const { root, unit } = unitRoot(t, broken)
  const r = run('systemd-analyze', [`--root=${root}`, 'verify', unit])
  t.match(r.out, /Unknown key 'MemroyMax'/)
})

t.test('the unit keeps the settings serial ports, sysfs GPIO and V8 need', async (t) => {
  const text = readFileSync(UNIT, 'utf8')
  const keys = text.split('\n').filter((l) => /^[A-Za-z]+=/.test(l))
  for (const off of ['PrivateDevices=', 'ProtectKernelTunables=', 'MemoryDenyWriteExecute=', 'PrivateUsers=', 'ProcSubset=']) {
    t.notOk(keys.some((l) => l.startsWith(off)), `${off} is not set`)
  }
  for (const on of ['Type=notify', 'NotifyAccess=all', 'WatchdogSec=30s', 'User=perch', 'SupplementaryGroups=dialout gpio', 'StateDirectory=perch', 'DevicePolicy=closed']) {
    t.ok(keys.includes(on), on)
  }
})

t.test('systemd-analyze security scores the unit', { skip: noAnalyze }, async (t) => {
  const { root, unit } = unitRoot(t, readFileSync(UNIT, 'utf8'))
  const r = run('systemd-analyze', [`--root=${root}`, 'security', '--offline=yes', unit])
  t.equal(r.status, 0, 'systemd-analyze security exits 0')
  const score = /Overall exposure level for perch\.service: ([0-9.]+) (\S+)/.exec(r.out)
  t.ok(score, 'the exposure level is printed')
  const value = Number(score?.[1])
  t.comment(`systemd-analyze security: exposure ${score?.[1]} ${score?.[2]}`)
  t.ok(value < 4, `exposure ${value} stays below 4 (was 2.5 when written)`)
})

const noSysusers = run('systemd-sysusers', ['--version']).missing ? 'systemd-sysusers is not installed here' : false

t.test('systemd-sysusers creates perch in dialout and gpio', { skip: noSysusers }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'perch-sysusers-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(join(root, 'etc'))
  const r = run('systemd-sysusers', [`--root=${root}`, SYSUSERS])
  t.equal(r.status, 0, 'systemd-sysusers exits 0')
  const passwd = readFileSync(join(root, 'etc/passwd'), 'utf8')
  const group = readFileSync(join(root, 'etc/group'), 'utf8')
  t.match(passwd, /^perch:x:\d+:\d+:[^:]*:\/var\/lib\/perch:\/usr\/sbin\/nologin$/m)
  for (const g of ['dialout', 'gpio']) {
    t.match(group, new RegExp(`^${g}:x:\\d+:(.*,)?perch(,.*)?$`, 'm'), `perch is a member of ${g}`)
  }
  t.match(group, /^perch:x:\d+:/m)
})
