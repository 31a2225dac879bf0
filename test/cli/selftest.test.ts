// perch selftest, as install.sh and the release build run it: every check passes on a working
// installation, and bad options are refused before anything starts.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runPerch } from '../helpers/perch-bin.js'

const cwd = mkdtempSync(join(tmpdir(), 'perch-selftest-cwd-'))
t.teardown(() => rmSync(cwd, { recursive: true, force: true }))

t.test('every check passes here, and nothing is left in the working directory', async (t) => {
  const r = await runPerch(t, cwd, ['selftest'])
  t.equal(r.code, 0, r.stdout + r.stderr)
  for (const check of ['sqlite', 'modules', 'broker', 'mqtt', 'rule']) t.match(r.stdout, new RegExp(`^ok +${check} `, 'm'), `${check} passed`)
  t.match(r.stdout, /answered 42/)
  t.match(r.stdout, new RegExp(`^selftest passed: perch \\S+ on linux-${process.arch}, node ${process.version.replace(/\./g, '\\.')} \\(abi ${process.versions.modules}\\)`, 'm'))
  t.notMatch(r.stdout, /FAILED/)
  t.same(readdirSync(cwd), [], 'its state lived in a temporary directory')
})

t.test('an unwritable temporary directory is a clear error, not a crash', async (t) => {
  const r = await runPerch(t, cwd, ['selftest'], { TMPDIR: '/nonexistent/perch-tmp' })
  t.equal(r.code, 1)
  t.match(r.stderr, /^perch selftest: cannot create a temporary directory in \/nonexistent\/perch-tmp .*set TMPDIR to a writable directory\n$/)
  t.equal(r.stdout, '')
})

t.test('bad options', async (t) => {
  for (const args of [['--timeout', '0'], ['--timeout', 'soon'], ['--bogus']]) {
    const r = await runPerch(t, cwd, ['selftest', ...args])
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, /^perch selftest: /)
  }
  const help = await runPerch(t, cwd, ['selftest', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /Usage: perch selftest/)
})
