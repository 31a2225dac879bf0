// The release tarballs scripts/dist.sh wrote to dist/ (CI builds all three before the
// tests): layout, that every binary inside is built for the tarball's machine, what pruning
// must have removed, the checksum file and the size target. A target with no tarball is skipped.

import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import t from 'tap'
import { ROOT } from '../helpers/perch-bin.js'

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
// ELF e_machine values.
const MACHINE: Record<string, number> = { x64: 62, arm64: 183, armhf: 40 }
const ELF_CLASS: Record<string, number> = { x64: 2, arm64: 2, armhf: 1 }
const PREBUILD: Record<string, string> = { x64: 'glibc', arm64: 'armv8.glibc', armhf: 'armv7.glibc' }

function elf(file: string): { class: number; machine: number } | undefined {
  const b = readFileSync(file).subarray(0, 20)
  if (b.readUInt32BE(0) !== 0x7f454c46) return undefined
  return { class: b[4] ?? 0, machine: b.readUInt16LE(18) }
}

for (const target of ['x64', 'arm64', 'armhf']) {
  const tarball = join(ROOT, 'dist', `perch-${VERSION}-linux-${target}.tar.xz`)
  const skip = existsSync(tarball) ? false : `no ${basename(tarball)} (scripts/dist.sh ${target} makes it)`
  t.test(`release tarball linux-${target}`, { skip }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'perch-tarball-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const listing = spawnSync('tar', ['-tJvf', tarball], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
    t.equal(listing.status, 0, 'the archive reads')
    t.notMatch(listing.stdout, /^\S+ (?!root\/root|0\/0)/m, 'every entry is owned by root (0/0)')
    t.equal(spawnSync('tar', ['-xJf', tarball, '-C', dir]).status, 0)
    const rel = join(dir, 'perch')
    const files = spawnSync('find', [rel, '-type', 'f'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout.trim().split('\n')
    const relative = files.map((f) => f.slice(rel.length + 1))

    for (const f of ['bin/perch', 'install.sh', 'node/bin/node', 'node/LICENSE', 'app/bin/perch.js', 'app/dist/main.js', 'app/package.json', 'app/rules/calc.js', 'systemd/perch.service', 'systemd/perch.sysusers.conf', 'README.md', 'RELEASE']) {
      t.ok(relative.includes(f), `has ${f}`)
    }
    for (const f of ['bin/perch', 'install.sh', 'node/bin/node']) t.ok((statSync(join(rel, f)).mode & 0o111) !== 0, `${f} is executable`)
    const release = readFileSync(join(rel, 'RELEASE'), 'utf8')
    t.match(release, new RegExp(`^version=${VERSION.replace(/\./g, '\\.')}$`, 'm'))
    t.match(release, new RegExp(`^target=linux-${target}$`, 'm'))
    t.match(release, /^abi=115$/m, 'Node ABI 115 (Node 20), which the addons were compiled for')

    const binaries = files.filter((f) => f.endsWith('.node') || f.endsWith('/node/bin/node'))
    const prebuild = `@serialport+bindings-cpp.${PREBUILD[target]}.node`
    t.same(binaries.map((f) => basename(f)).sort(), [prebuild, 'better_sqlite3.node', 'epoll.node', 'node'].sort(), 'one serialport prebuild, two compiled addons and node')
    for (const f of binaries) {
      t.same(elf(f), { class: ELF_CLASS[target], machine: MACHINE[target] }, `${f.slice(rel.length + 1)} is built for ${target}`)
    }
    const symbols = spawnSync('file', ['-b', join(rel, 'node/bin/node')], { encoding: 'utf8' })
    if (symbols.status === 0) t.match(symbols.stdout, /stripped/, 'node is stripped')

    const kept = (f: string): boolean => f === 'README.md' || f === 'app/rules/README.md' || /(^|\/)licen[cs]e[^/]*$/i.test(f)
    t.same(relative.filter((f) => /\.([cm]?ts|map|md|gyp|cc|cpp|c|h)$/.test(f) && !kept(f)), [], 'no sources, maps, docs or gyp files besides the READMEs and licences')
    t.same(relative.filter((f) => /\/node_modules\/(typescript|tap|@types|node-gyp|nan|prebuild-install|mqtt|aedes|@biomejs|@jitl\/quickjs-wasmfile-debug-sync)\//.test(f)), [], 'no development packages')
    t.same(relative.filter((f) => /\/(test|tests|docs?|examples?)\//.test(f) && f.includes('node_modules')), [], 'no tests, docs or examples of dependencies')

    const sums = readFileSync(`${tarball}.sha256`, 'utf8')
    const digest = createHash('sha256').update(readFileSync(tarball)).digest('hex')
    t.equal(sums, `${digest}  ${basename(tarball)}\n`, 'the .sha256 file matches (sha256sum -c format)')
    const mb = statSync(tarball).size / 1048576
    t.comment(`${basename(tarball)}: ${mb.toFixed(1)} MB`)
    t.ok(mb <= 25, `at most 25 MB compressed (${mb.toFixed(1)} MB)`)
  })
}
