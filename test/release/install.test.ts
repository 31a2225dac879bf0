// install.sh into a scratch root (--root): install, upgrade, reinstall, rollback, uninstall and
// purge, with the bad inputs (wrong architecture, old glibc, a broken release, a damaged
// tarball). The releases are built here from this checkout with the layout of a real tarball;
// when `scripts/dist.sh x64` has made a real one (CI does), it is installed as well.
import { spawnSync } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { cleanEnv, ROOT } from '../helpers/perch-bin.js'
import { systemdRoot } from '../helpers/systemd-root.js'

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
const dpkgArch = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout?.trim()
const TARGET = ({ amd64: 'x64', arm64: 'arm64', armhf: 'armhf' } as Record<string, string>)[dpkgArch ?? ''] ?? 'unknown'
const skip = TARGET === 'unknown' ? 'needs dpkg on amd64, arm64 or armhf' : spawnSync('systemd-sysusers', ['--version']).error ? 'needs systemd-sysusers' : false

interface Run {
  code: number | null
  out: string
}

function scratch(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A release tree like the tarball's, pointing at this checkout: the app's folders are
 * symlinks, and node/bin/node is this Node (or any stand-in executable).
 */
function makeRelease(t: Test, version: string, opts: { target?: string; node?: string } = {}): string {
  const base = scratch(t, 'perch-release-')
  const rel = join(base, 'perch')
  for (const dir of ['app', 'bin', 'node/bin', 'systemd']) mkdirSync(join(rel, dir), { recursive: true })
  for (const entry of ['bin', 'dist', 'node_modules', 'package.json', 'rules', 'device']) symlinkSync(join(ROOT, entry), join(rel, 'app', entry))
  symlinkSync(opts.node ?? process.execPath, join(rel, 'node/bin/node'))
  copyFileSync(join(ROOT, 'scripts/launcher.sh'), join(rel, 'bin/perch'))
  chmodSync(join(rel, 'bin/perch'), 0o755)
  copyFileSync(join(ROOT, 'install.sh'), join(rel, 'install.sh'))
  chmodSync(join(rel, 'install.sh'), 0o755)
  for (const f of ['perch.service', 'perch.sysusers.conf']) copyFileSync(join(ROOT, 'systemd', f), join(rel, 'systemd', f))
  writeFileSync(join(rel, 'RELEASE'), `version=${version}\ntarget=linux-${opts.target ?? TARGET}\nnode=${process.versions.node}\nabi=${process.versions.modules}\n`)
  return rel
}

function tarball(t: Test, rel: string): string {
  const file = join(scratch(t, 'perch-tarball-'), 'perch.tar.xz')
  const r = spawnSync('tar', ['-C', join(rel, '..'), '-cJf', file, 'perch'])
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`)
  return file
}

function install(root: string, args: readonly string[], env: Record<string, string> = {}): Run {
  const r = spawnSync('sh', [join(ROOT, 'install.sh'), '--root', root, ...args], { encoding: 'utf8', env: cleanEnv(env), timeout: 120_000 })
  return { code: r.status, out: `${r.stdout}${r.stderr}` }
}

/** A root with the system's unit tree, so `systemd-analyze --root` can verify the unit there. */
function makeRoot(t: Test): string {
  return systemdRoot(t, ['bin/sh', 'bin/kill'])
}

/** Exit 0; the installer's output is shown only when it failed. */
function succeeded(t: Test, r: Run, what: string): void {
  t.equal(r.code, 0, `${what}: exit 0`)
  if (r.code !== 0) t.comment(r.out)
}

const WANTS = 'etc/systemd/system/multi-user.target.wants/perch.service'
const current = (root: string): string => readlinkSync(join(root, 'opt/perch/current'))
const previous = (root: string): string | undefined => (existsSync(join(root, 'opt/perch/previous')) ? readlinkSync(join(root, 'opt/perch/previous')) : undefined)

t.test('install, upgrade, reinstall, rollback, uninstall and purge in a scratch root', { skip }, async (t) => {
  const root = makeRoot(t)
  const v1 = tarball(t, makeRelease(t, '1.0.0'))
  const v2 = tarball(t, makeRelease(t, '1.1.0'))

  const first = install(root, [v1])
  succeeded(t, first, 'install 1.0.0')
  t.match(first.out, /perch selftest/, 'the release is checked before it is switched to')
  t.match(first.out, /installed 1\.0\.0/)
  t.equal(current(root), 'releases/1.0.0')
  t.equal(previous(root), undefined, 'no previous release yet')
  t.equal(readFileSync(join(root, 'etc/systemd/system/perch.service'), 'utf8'), readFileSync(join(ROOT, 'systemd/perch.service'), 'utf8'), 'the unit is installed')
  t.equal(readlinkSync(join(root, WANTS)), '/etc/systemd/system/perch.service', 'and enabled')
  t.equal(readFileSync(join(root, 'usr/lib/sysusers.d/perch.conf'), 'utf8'), readFileSync(join(ROOT, 'systemd/perch.sysusers.conf'), 'utf8'))
  t.match(readFileSync(join(root, 'etc/passwd'), 'utf8'), /^perch:x:\d+:\d+:perch edge gateway:\/var\/lib\/perch:\/usr\/sbin\/nologin$/m, 'systemd-sysusers made the perch user')
  const groups = readFileSync(join(root, 'etc/group'), 'utf8')
  t.match(groups, /^dialout:x:\d+:perch$/m, 'perch is in dialout (serial ports)')
  t.match(groups, /^gpio:x:\d+:perch$/m, 'and in gpio')
  t.equal(readlinkSync(join(root, 'usr/local/bin/perch')), '/opt/perch/current/bin/perch', 'perch is on the PATH')
  const launched = spawnSync(join(root, 'opt/perch/current/bin/perch'), ['version'], { encoding: 'utf8', env: cleanEnv() })
  t.equal(launched.stdout, `perch ${VERSION}\n`, 'the installed launcher runs perch')

  const verify = spawnSync('systemd-analyze', [`--root=${root}`, 'verify', '/etc/systemd/system/perch.service'], { encoding: 'utf8' })
  t.equal(`${verify.stdout}${verify.stderr}`, '', 'systemd-analyze verify prints nothing for the installed unit')

  // State and config written while 1.0.0 ran must survive everything short of --purge.
  mkdirSync(join(root, 'etc/perch'), { recursive: true })
  writeFileSync(join(root, 'etc/perch/perch.json'), '{"sys":{"interval":5}}\n')
  mkdirSync(join(root, 'var/lib/perch'), { recursive: true })
  writeFileSync(join(root, 'var/lib/perch/accounts.db'), 'precious')

  const upgrade = install(root, [v2])
  succeeded(t, upgrade, 'upgrade to 1.1.0')
  t.match(upgrade.out, /installed 1\.1\.0 .*previous: 1\.0\.0/)
  t.equal(current(root), 'releases/1.1.0')
  t.equal(previous(root), 'releases/1.0.0')
  t.same(readdirSync(join(root, 'opt/perch/releases')).sort(), ['1.0.0', '1.1.0'])

  const again = install(root, [v2])
  t.equal(again.code, 0)
  t.match(again.out, /1\.1\.0 is already the current release/)
  t.equal(previous(root), 'releases/1.0.0', 'a repeated install changes nothing')

  const back = install(root, ['--rollback'])
  succeeded(t, back, 'rollback')
  t.match(back.out, /rolled back from 1\.1\.0 to 1\.0\.0/)
  t.equal(current(root), 'releases/1.0.0')
  t.equal(previous(root), 'releases/1.1.0', 'a second rollback would go forward again')

  t.equal(readFileSync(join(root, 'etc/perch/perch.json'), 'utf8'), '{"sys":{"interval":5}}\n', 'config kept across upgrade and rollback')
  t.equal(readFileSync(join(root, 'var/lib/perch/accounts.db'), 'utf8'), 'precious', 'state kept across upgrade and rollback')

  const gone = install(root, ['--uninstall'])
  succeeded(t, gone, 'uninstall')
  t.notOk(existsSync(join(root, 'opt/perch')), 'the releases are removed')
  t.notOk(existsSync(join(root, 'etc/systemd/system/perch.service')), 'the unit is removed')
  t.throws(() => lstatSync(join(root, WANTS)), 'and disabled')
  t.notOk(existsSync(join(root, 'usr/local/bin/perch')))
  t.equal(readFileSync(join(root, 'var/lib/perch/accounts.db'), 'utf8'), 'precious', 'state kept by a plain uninstall')
  t.ok(existsSync(join(root, 'etc/perch/perch.json')), 'config kept by a plain uninstall')

  t.equal(install(root, ['--uninstall', '--purge']).code, 0)
  t.notOk(existsSync(join(root, 'var/lib/perch')), '--purge removes the state')
  t.notOk(existsSync(join(root, 'etc/perch')), 'and the config')
})

t.test('a fresh install writes the default config with the state directory systemd gives', { skip }, async (t) => {
  const root = makeRoot(t)
  const r = install(root, [tarball(t, makeRelease(t, '1.0.0'))])
  succeeded(t, r, 'install')
  const file = join(root, 'etc/perch/perch.json')
  if (!existsSync(file)) {
    t.match(r.out, /runs on its embedded defaults/, 'without config init, the installer says so')
    return
  }
  const check = spawnSync(join(root, 'opt/perch/current/bin/perch'), ['config', 'check', file], { encoding: 'utf8', env: cleanEnv() })
  t.equal(check.status, 0, check.stderr)
  t.equal((JSON.parse(check.stdout) as { dataDir: string }).dataDir, '/var/lib/perch')
})

t.test('bad inputs: clear errors, and the installed release stays as it was', { skip }, async (t) => {
  const root = makeRoot(t)
  t.equal(install(root, [tarball(t, makeRelease(t, '1.0.0'))]).code, 0)

  const other = TARGET === 'arm64' ? 'armhf' : 'arm64'
  const foreign = install(root, [tarball(t, makeRelease(t, '2.0.0', { target: other }))])
  t.not(foreign.code, 0)
  t.match(foreign.out, new RegExp(`this release is for linux-${other}, but this system is ${dpkgArch}`))

  const fakes = scratch(t, 'perch-fakebin-')
  writeFileSync(join(fakes, 'getconf'), '#!/bin/sh\necho glibc 2.31\n')
  chmodSync(join(fakes, 'getconf'), 0o755)
  const oldGlibc = install(root, [tarball(t, makeRelease(t, '2.0.0'))], { PATH: `${fakes}:${process.env.PATH}` })
  t.not(oldGlibc.code, 0)
  t.match(oldGlibc.out, /glibc 2\.31 is too old: perch needs 2\.34 or newer/)

  const broken = install(root, [tarball(t, makeRelease(t, '2.0.0', { node: '/bin/false' }))])
  t.not(broken.code, 0)
  t.match(broken.out, /release 2\.0\.0 failed its selftest on this machine; nothing was changed/)
  t.notOk(existsSync(join(root, 'opt/perch/releases/2.0.0')), 'the broken release is not left behind')
  t.notOk(existsSync(join(root, 'opt/perch/releases/2.0.0.new')))

  const damaged = join(scratch(t, 'perch-damaged-'), 'perch.tar.xz')
  writeFileSync(damaged, readFileSync(tarball(t, makeRelease(t, '2.0.0'))).subarray(0, 2000))
  const cut = install(root, [damaged])
  t.not(cut.code, 0)
  t.match(cut.out, /cannot unpack .*perch\.tar\.xz/)

  const missing = install(root, ['/nonexistent/perch.tar.xz'])
  t.match(missing.out, /no such file/)
  t.match(install(root, ['--rollback']).out, /no previous release to roll back to/)
  t.match(install(root, ['--purge']).out, /--purge goes with --uninstall/)
  t.match(install(root, ['--bogus']).out, /unknown option --bogus/)

  t.equal(current(root), 'releases/1.0.0', 'after all that, 1.0.0 is still current')
  t.same(readdirSync(join(root, 'opt/perch/releases')), ['1.0.0'])
})

t.test('only the newest releases are kept, never the current or previous one', { skip }, async (t) => {
  const root = makeRoot(t)
  for (const v of ['1.0.0', '1.1.0', '1.2.0', '1.3.0']) t.equal(install(root, ['--no-selftest', tarball(t, makeRelease(t, v))]).code, 0)
  t.same(readdirSync(join(root, 'opt/perch/releases')).sort(), ['1.1.0', '1.2.0', '1.3.0'])
  t.equal(install(root, ['--rollback']).code, 0)
  t.equal(current(root), 'releases/1.2.0')
})

const realTarball = join(ROOT, 'dist', `perch-${VERSION}-linux-${TARGET}.tar.xz`)
t.test('the release tarball built by scripts/dist.sh installs and runs', { skip: skip || (existsSync(realTarball) ? false : `no ${realTarball} (scripts/dist.sh ${TARGET} makes it)`) }, async (t) => {
  const root = makeRoot(t)
  const r = install(root, [realTarball])
  succeeded(t, r, 'install the real tarball')
  t.match(r.out, /selftest passed/, 'its selftest passed here')
  const v = spawnSync(join(root, 'opt/perch/current/bin/perch'), ['version'], { encoding: 'utf8', env: cleanEnv() })
  t.equal(v.stdout, `perch ${VERSION}\n`)
  t.match(readFileSync(join(root, 'opt/perch/current/RELEASE'), 'utf8'), new RegExp(`^target=linux-${TARGET}$`, 'm'))
})
