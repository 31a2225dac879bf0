// `perch config init` as users run it: the commented file it writes, read back by
// `perch config check`, and the files it refuses to write.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runPerch } from '../helpers/perch-bin.js'

const work = mkdtempSync(join(tmpdir(), 'perch-config-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

let n = 0
function fresh(name: string): string {
  const dir = join(work, `case${n++}`)
  mkdirSync(dir)
  return join(dir, name)
}

t.test('init prints a commented config that check reads back as exactly the defaults', async (t) => {
  const init = await runPerch(t, work, ['config', 'init'])
  t.equal(init.code, 0, init.stderr)
  t.equal(init.stderr, '')
  t.throws(() => JSON.parse(init.stdout), 'it carries comments, so it is not plain JSON')
  const path = fresh('perch.json')
  writeFileSync(path, init.stdout)
  const checked = await runPerch(t, work, ['config', 'check', path])
  t.equal(checked.code, 0, checked.stderr)
  const defaults = await runPerch(t, work, ['config', 'defaults'])
  t.equal(checked.stdout, defaults.stdout, 'the same text as perch config defaults')
})

t.test('init explains every top-level key of the defaults in a comment just above it', async (t) => {
  const init = await runPerch(t, work, ['config', 'init'])
  const lines = init.stdout.split('\n')
  const defaults = JSON.parse((await runPerch(t, work, ['config', 'defaults'])).stdout) as Record<string, unknown>
  for (const key of Object.keys(defaults)) {
    const at = lines.indexOf(lines.find((l) => l.startsWith(`  "${key}": `)) ?? '')
    t.ok(at > 0, `${key} is written`)
    t.match(lines[at - 1] ?? '', /^ {2}\/\/ \S/, `${key} has a comment above it`)
  }
  for (const line of lines) t.ok(line.length <= 100, `short line: ${line}`)
})

t.test('init shows the sections that are off by default as lines that work once uncommented', async (t) => {
  const init = await runPerch(t, work, ['config', 'init'])
  t.match(init.stdout, /^ {2}\/\/ "http": /m)
  t.match(init.stdout, /^ {2}\/\/ "sync": /m)
  const path = fresh('perch.json')
  writeFileSync(path, init.stdout.replace(/^ {2}\/\/ ("http": .*)$/m, '  $1'))
  const checked = await runPerch(t, work, ['config', 'check', path])
  t.equal(checked.code, 0, checked.stderr)
  t.same((JSON.parse(checked.stdout) as { http?: unknown }).http, { host: '127.0.0.1', port: 9464 })
})

t.test('init writes the data directory it is given, as the installer relies on', async (t) => {
  const path = fresh('perch.json')
  const init = await runPerch(t, work, ['config', 'init', path], { STATE_DIRECTORY: '/var/lib/perch' })
  t.equal(init.code, 0, init.stderr)
  const checked = await runPerch(t, work, ['config', 'check', path])
  t.equal((JSON.parse(checked.stdout) as { dataDir: string }).dataDir, '/var/lib/perch')
})

t.test('init FILE creates the file, mode 0640, and says where', async (t) => {
  const path = fresh('perch.json')
  const r = await runPerch(t, work, ['config', 'init', path])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `perch: wrote the default configuration to ${path}\n`)
  t.equal(r.stderr, '')
  const printed = await runPerch(t, work, ['config', 'init'])
  t.equal(readFileSync(path, 'utf8'), printed.stdout, 'the same text init prints')
  // The mode perch asks for, less what the umask takes away (022 or 027 on most systems).
  t.equal(statSync(path).mode & 0o777 & ~0o640, 0, 'nothing beyond 0640')
  t.equal(statSync(path).mode & 0o600, 0o600, 'the owner reads and writes it')
})

t.test('init FILE with a relative path says the full path', async (t) => {
  const path = fresh('perch.json')
  const dir = join(path, '..')
  const r = await runPerch(t, dir, ['config', 'init', 'perch.json'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, `perch: wrote the default configuration to ${path}\n`)
})

t.test('init refuses to replace an existing file unless --force', async (t) => {
  const path = fresh('perch.json')
  writeFileSync(path, '{"log": {"level": "debug"}}\n')
  chmodSync(path, 0o600)
  const refused = await runPerch(t, work, ['config', 'init', path])
  t.equal(refused.code, 1)
  t.equal(refused.stdout, '')
  t.equal(refused.stderr, `perch config init: ${path} already exists; use --force to replace it\n`)
  t.equal(readFileSync(path, 'utf8'), '{"log": {"level": "debug"}}\n', 'untouched')
  for (const flag of ['--force', '-f']) {
    writeFileSync(path, 'old')
    const forced = await runPerch(t, work, ['config', 'init', path, flag])
    t.equal(forced.code, 0, forced.stderr)
    t.match(readFileSync(path, 'utf8'), /^\/\/ perch configuration/, `${flag}: replaced`)
    t.equal(statSync(path).mode & 0o777, 0o600, `${flag}: the file keeps its mode`)
  }
})

t.test('init says clearly why it cannot write', async (t) => {
  const dir = join(fresh('x'), '..')
  const cases: { args: string[]; code: number; why: string | RegExp }[] = [
    { args: [dir], code: 1, why: `perch config init: ${dir} is a directory\n` },
    { args: [dir, '--force'], code: 1, why: `perch config init: ${dir} is a directory\n` },
    { args: [join(dir, 'missing', 'perch.json')], code: 1, why: `perch config init: cannot write ${join(dir, 'missing', 'perch.json')}: its directory does not exist\n` },
    { args: ['a.json', 'b.json'], code: 2, why: /^perch config init: one FILE at most, not 2\n\nUsage: perch config/ },
    { args: ['--frob'], code: 2, why: /^perch config init: Unknown option '--frob'/ },
  ]
  for (const c of cases) {
    const r = await runPerch(t, dir, ['config', 'init', ...c.args])
    t.equal(r.code, c.code, `init ${c.args.join(' ')}: exit ${c.code}`)
    t.equal(r.stdout, '', 'nothing on stdout')
    if (typeof c.why === 'string') t.equal(r.stderr, c.why)
    else t.match(r.stderr, c.why)
  }
  if (process.getuid?.() !== 0) {
    const locked = join(fresh('x'), '..')
    chmodSync(locked, 0o500)
    const r = await runPerch(t, work, ['config', 'init', join(locked, 'perch.json')])
    chmodSync(locked, 0o700)
    t.equal(r.stderr, `perch config init: cannot write ${join(locked, 'perch.json')}: permission denied\n`)
  }
})

t.test('check reads comments and trailing commas, and points at a broken comment', async (t) => {
  const good = fresh('good.json')
  writeFileSync(good, '{\n  // quieter\n  "log": { "level": "warn", },\n  /* no $SYS topics */\n  "sys": { "interval": 0 },\n}\n')
  const ok = await runPerch(t, work, ['config', 'check', good])
  t.equal(ok.code, 0, ok.stderr)
  t.match(JSON.parse(ok.stdout), { log: { level: 'warn' }, sys: { interval: 0 } })
  const bad = fresh('bad.json')
  writeFileSync(bad, '{\n  "log": { "level": "warn" }\n  /* forgot to close\n}\n')
  const r = await runPerch(t, work, ['config', 'check', bad])
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.equal(r.stderr, `perch: config file ${bad}: not valid JSON: unterminated /* comment starting at line 3, column 3\n`)
  const typo = fresh('typo.json')
  writeFileSync(typo, '{\n  // a comment\n  "log": { "level": "warn" }\n  "sys": {}\n}\n')
  const t2 = await runPerch(t, work, ['config', 'check', typo])
  t.equal(t2.code, 1)
  t.match(t2.stderr, new RegExp(`config file ${typo}: not valid JSON: .*\\(line 4, column 3\\)`))
})

t.test('config help lists init; so does perch --help', async (t) => {
  const help = await runPerch(t, work, ['config', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /perch config init \[FILE\] \[--force\]/)
  const main = await runPerch(t, work, ['--help'])
  t.match(main.stdout, /config init \[FILE\]/)
})
