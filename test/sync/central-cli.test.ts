// `perch central ...` run as administrators run it (`node bin/perch.js`), against a real MariaDB:
// one server for the file, one database per test.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { PasswordChecker } from '../../src/auth/password.js'
import { MysqlSession, parseMysqlUrl } from '../../src/sync/mysql.js'
import type { ToolResult } from '../helpers/cli.js'
import { ADMIN_PASSWORD, type MariaDb, startMariaDb } from '../helpers/mariadb.js'
import { BIN, cleanEnv, runPerch } from '../helpers/perch-bin.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const work = mkdtempSync(join(tmpdir(), 'perch-central-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

/** `perch central ARGS --mysql URL`. */
function central(t: Teardown, url: string, ...args: string[]): Promise<ToolResult> {
  return runPerch(t, work, ['central', ...args, '--mysql', url])
}

/** The same, with `input` on stdin (runPerch gives the child no stdin). */
function centralWithStdin(url: string, input: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'central', ...args, '--mysql', url], { cwd: work, env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(input)
  })
}

/** Runs `perch central ARGS` and fails the test unless it exits 0; returns its stdout. */
async function ok(t: Test, url: string, ...args: string[]): Promise<string> {
  const r = await central(t, url, ...args)
  t.equal(r.code, 0, `perch central ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** One column of a query run as root, a line per row. */
async function column(db: MariaDb, database: string, sql: string): Promise<string[]> {
  return (await db.sql(sql, database)).split('\n').filter((l) => l !== '')
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

/** A fresh database with the central schema. */
async function initialised(t: Test, db: MariaDb, name: string): Promise<string> {
  const url = db.url(await db.createDatabase(name))
  await ok(t, url, 'init')
  return url
}

// Each test has its own database and gateway names (MySQL users belong to the server), so they run side by side.
t.test('perch central against MariaDB', { jobs: 4 }, async (t) => {
  const db = await startMariaDb(t)

  t.test('init creates the schema once; a second init is up to date; a newer schema is refused', async (t) => {
    const url = db.url(await db.createDatabase('c_init'))
    const before = await central(t, url, 'status')
    t.equal(before.code, 1)
    t.match(before.stderr, /^perch central: the central schema is not initialised: run perch central init\n$/)
    t.equal(await ok(t, url, 'init'), 'central schema initialised: version 0 -> 1\n')
    t.equal(await ok(t, url, 'init'), 'central schema is up to date (version 1)\n')
    t.same(await column(db, 'c_init', 'SELECT version FROM perch_schema'), ['1'])
    t.match(await ok(t, url, 'status'), /^schema version 1\ncounter 0\nepoch [0-9a-f-]{36}\npruned upto 0\n/)
    await db.sql('UPDATE perch_schema SET version = 99', 'c_init')
    for (const args of [['init'], ['status']]) {
      const newer = await central(t, url, ...args)
      t.equal(newer.code, 1)
      t.match(newer.stderr, /at version 99, newer than this perch knows \(1\): upgrade perch/)
    }
  })

  t.test('gateway add prints a config whose login reads only its own accounts through the views', async (t) => {
    const url = await initialised(t, db, 'c_gateway')
    const out = await central(t, url, 'gateway', 'add', 'gw1')
    t.equal(out.code, 0, out.stderr)
    const config = JSON.parse(out.stdout) as { sync: { url: string; gateway: string } }
    t.same(Object.keys(config), ['sync'], 'stdout is the config and nothing else')
    t.equal(config.sync.gateway, 'gw1')
    const gwUrl = new URL(config.sync.url)
    t.equal(gwUrl.username, 'perch_gw_gw1')
    t.match(gwUrl.password, /^[A-Za-z0-9_-]{32}$/, '24 random bytes, base64url')
    t.equal(`${gwUrl.hostname}:${gwUrl.port}${gwUrl.pathname}`, `127.0.0.1:${db.port}/c_gateway`)
    t.notMatch(out.stderr, gwUrl.password, 'the password is only in the config')
    const file = join(work, 'gw1.json')
    writeFileSync(file, out.stdout)
    const checked = await runPerch(t, work, ['config', 'check', file])
    t.equal(checked.code, 0, `perch config check accepts it: ${checked.stderr}`)

    const [other, again, bad] = await Promise.all([
      central(t, url, 'gateway', 'add', 'gw2', '--host', 'db.example.org', '--port', '3307', '--gateway-host', '10.%'),
      central(t, url, 'gateway', 'add', 'gw1'),
      central(t, url, 'gateway', 'add', 'gw 3'),
    ])
    t.equal(other.code, 0, other.stderr)
    t.match(JSON.parse(other.stdout), { sync: { url: /^mysql:\/\/perch_gw_gw2:[A-Za-z0-9_-]{32}@db\.example\.org:3307\/c_gateway$/, gateway: 'gw2' } })
    t.same(await column(db, 'c_gateway', "SELECT Host FROM mysql.user WHERE User = 'perch_gw_gw2'"), ['10.%'])
    t.equal(again.code, 1)
    t.match(again.stderr, /^perch central: gateway "gw1" exists/)
    t.equal(bad.code, 1)
    t.match(bad.stderr, /letters, digits/)

    await db.sql("INSERT INTO accounts (name) VALUES ('farm'), ('barn')", 'c_gateway')
    await Promise.all([ok(t, url, 'assign', 'gw1', 'farm'), ok(t, url, 'assign', 'gw2', 'barn')])

    const target = parseMysqlUrl(config.sync.url, { connectTimeoutMs: 5000, queryTimeoutMs: 5000 })
    if (!target.ok) throw target.error
    const opened = await MysqlSession.open(target.value)
    if (!opened.ok) throw opened.error
    const gw = opened.value
    t.teardown(() => gw.close())
    const mine = await gw.query('SELECT name FROM v_accounts')
    t.same(mine.ok && mine.value.map((r) => r.name), ['farm'], 'the gateway sees only its own accounts')
    const denied = await gw.query('SELECT * FROM accounts')
    t.equal(!denied.ok && denied.error.errno, 1142, 'the tables themselves are denied')
    const log = await gw.query('SELECT account, op FROM v_change_log')
    t.same(log.ok && log.value, [{ account: 'farm', op: 'U' }])

    t.match(await ok(t, url, 'gateway', 'list'), /^NAME +DB USER +ACCOUNTS\ngw1 +perch_gw_gw1 +1\ngw2 +perch_gw_gw2 +1\n$/)
    t.equal(await ok(t, url, 'gateway', 'rm', 'gw1'), "gateway gw1 removed: dropped 'perch_gw_gw1'@'%'; unassigned 1 account\n")
    t.same(await column(db, 'c_gateway', "SELECT COUNT(*) FROM mysql.user WHERE User = 'perch_gw_gw1'"), ['0'])
    t.same(await column(db, 'c_gateway', "SELECT op FROM change_log WHERE account = 'farm' ORDER BY seq"), ['U', 'D'], 'the unassignment was logged')
    const login = await MysqlSession.open(target.value)
    t.equal(!login.ok && login.error.kind, 'denied', 'its login is gone')
    const unknown = await central(t, url, 'gateway', 'rm', 'gw1')
    t.equal(unknown.code, 1)
    t.equal(unknown.stderr, 'perch central: no gateway "gw1"\n')
  })

  t.test('account add, passwd, disable, enable, rm: only verifiers are stored', async (t) => {
    const url = await initialised(t, db, 'c_accounts')
    const verifier = async (name: string): Promise<string> => (await column(db, 'c_accounts', `SELECT verifier FROM accounts WHERE name = '${name}'`))[0] ?? ''
    const matches = async (name: string, password: string): Promise<boolean> =>
      new PasswordChecker().verify(name, Buffer.from(password), await verifier(name))

    const [alice, root, generated] = await Promise.all([
      ok(t, url, 'account', 'add', 'alice', '--password', 'alice-secret'),
      ok(t, url, 'account', 'add', 'root', '--password', 'root-secret', '--admin', '--disabled'),
      ok(t, url, 'account', 'add', 'bob'),
    ])
    t.equal(alice, 'account alice added\n')
    t.match(await verifier('alice'), /^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/)
    t.ok(await matches('alice', 'alice-secret'))
    t.equal(root, 'admin account root added (disabled)\n')
    const bobPassword = /; password: ([A-Za-z0-9_-]{24})\n$/.exec(generated)?.[1] ?? ''
    t.ok(await matches('bob', bobPassword), 'a generated password is printed once and stored as a verifier')
    const dump = await db.sql('SELECT * FROM accounts', 'c_accounts')
    for (const plain of ['alice-secret', 'root-secret', bobPassword]) t.notMatch(dump, plain, 'no plaintext password is stored')

    const [taken, badId, nobody] = await Promise.all([
      central(t, url, 'account', 'add', 'alice', '--password', 'x'),
      central(t, url, 'account', 'add', 'a/b', '--password', 'x'),
      central(t, url, 'account', 'passwd', 'nobody', '--password', 'x'),
    ])
    t.equal(taken.code, 1)
    t.equal(taken.stderr, 'perch central: account "alice" exists\n')
    t.equal(nobody.code, 1)
    t.equal(nobody.stderr, 'perch central: no account "nobody"\n')
    t.equal(badId.code, 1)
    t.match(badId.stderr, /cannot add "a\/b": an account id may not contain/)

    const v1 = Number((await column(db, 'c_accounts', "SELECT version FROM accounts WHERE name = 'alice'"))[0])
    t.equal(await ok(t, url, 'account', 'passwd', 'alice', '--password', 'new-secret'), 'password of alice changed\n')
    t.ok(await matches('alice', 'new-secret'))
    t.ok(Number((await column(db, 'c_accounts', "SELECT version FROM accounts WHERE name = 'alice'"))[0]) > v1, 'the version moves on')
    const piped = await centralWithStdin(url, 'piped-secret\n', 'account', 'passwd', 'alice', '--password', '-')
    t.equal(piped.code, 0, piped.stderr)
    t.ok(await matches('alice', 'piped-secret'), '--password - reads stdin, without its final newline')
    const file = join(work, 'pw.txt')
    writeFileSync(file, 'file-secret\n')
    await ok(t, url, 'account', 'passwd', 'alice', '--password-file', file)
    t.ok(await matches('alice', 'file-secret'))

    await Promise.all([ok(t, url, 'account', 'disable', 'alice'), ok(t, url, 'account', 'enable', 'root'), ok(t, url, 'gateway', 'add', 'acc-gw')])
    t.same(await column(db, 'c_accounts', 'SELECT CONCAT(name, admin, enabled) FROM accounts ORDER BY name'), ['alice00', 'bob01', 'root11'])
    const listed = JSON.parse(await ok(t, url, 'account', 'list', '--json')) as { name: string; admin: boolean; enabled: boolean }[]
    t.same(
      listed.map((a) => [a.name, a.admin, a.enabled]),
      [
        ['alice', false, false],
        ['bob', false, true],
        ['root', true, true],
      ],
    )
    await Promise.all([ok(t, url, 'assign', 'acc-gw', 'bob'), ok(t, url, 'grant', 'add', 'bob', 'alice', 'x/#', '--subscribe')])
    t.match(await ok(t, url, 'account', 'list', '--gateway', 'acc-gw'), /^NAME +ADMIN +ENABLED +VERSION +GATEWAYS\nbob +no +yes +\d+ +acc-gw\n$/)
    t.equal(await ok(t, url, 'account', 'rm', 'bob'), 'account bob removed, with its grants, rules and assignments\n')
    t.same(await column(db, 'c_accounts', 'SELECT name FROM accounts ORDER BY name'), ['alice', 'root'])
    t.same(await column(db, 'c_accounts', 'SELECT COUNT(*) FROM grants UNION ALL SELECT COUNT(*) FROM gateway_accounts'), ['0', '0'])
  })

  t.test('assign and unassign log the account for that gateway only', async (t) => {
    const url = await initialised(t, db, 'c_assign')
    await Promise.all([ok(t, url, 'gateway', 'add', 'north'), ok(t, url, 'gateway', 'add', 'south')])
    await db.sql("INSERT INTO accounts (name) VALUES ('farm')", 'c_assign')
    const log = (): Promise<string[]> =>
      column(db, 'c_assign', "SELECT CONCAT(g.name, ' ', c.entity, ' ', c.account, ' ', c.op) FROM change_log c JOIN gateways g ON g.id = c.gateway_id ORDER BY c.seq")
    t.same(await log(), [], 'an unassigned account is nobody\'s change')
    t.equal(await ok(t, url, 'assign', 'north', 'farm'), 'account farm assigned to gateway north\n')
    t.same(await log(), ['north account farm U'])
    const refusals = [
      [['assign', 'north', 'farm'], 'account "farm" is already assigned to gateway "north"'],
      [['assign', 'west', 'farm'], 'no gateway "west"'],
      [['assign', 'north', 'barn'], 'no account "barn"'],
      [['unassign', 'south', 'farm'], 'account "farm" is not assigned to gateway "south"'],
    ] as const
    const refused = await Promise.all(refusals.map(([args]) => central(t, url, ...args)))
    for (const [i, [, message]] of refusals.entries()) {
      t.equal(refused[i]?.code, 1)
      t.equal(refused[i]?.stderr, `perch central: ${message}\n`)
    }
    await ok(t, url, 'account', 'passwd', 'farm', '--password', 'p2')
    t.equal(await ok(t, url, 'unassign', 'north', 'farm'), 'account farm unassigned from gateway north\n')
    t.same(await log(), ['north account farm U', 'north account farm U', 'north account farm D'])
  })

  t.test('grants stay inside the owner\'s namespace', async (t) => {
    const url = await initialised(t, db, 'c_grants')
    await db.sql("INSERT INTO accounts (name) VALUES ('farm'), ('barn')", 'c_grants')
    const [outside, noRight, missing] = await Promise.all([
      central(t, url, 'grant', 'add', 'farm', 'barn', '/barn/#', '--subscribe'),
      central(t, url, 'grant', 'add', 'farm', 'barn', 'x'),
      central(t, url, 'grant', 'add', 'farm', 'nobody', 'x', '--publish'),
    ])
    t.equal(outside.code, 1)
    t.equal(outside.stderr, 'perch central: "/barn/#" is outside /farm/: an account grants only its own topics\n')
    t.equal(missing.stderr, 'perch central: no account "nobody"\n')
    t.equal(noRight.code, 2)
    t.match(noRight.stderr, /^perch central grant add: give --publish, --subscribe or both\n\nUsage: perch central/)
    t.same(await column(db, 'c_grants', 'SELECT COUNT(*) FROM grants'), ['0'], 'nothing was stored')
    t.equal(await ok(t, url, 'grant', 'add', 'farm', 'barn', 'sensors/#', '--subscribe'), 'grant of /farm/sensors/# from farm to barn: subscribe\n')
    t.equal(await ok(t, url, 'grant', 'add', 'farm', 'barn', '/farm/sensors/#', '--publish'), 'grant of /farm/sensors/# from farm to barn: subscribe,publish\n')
    t.match(await ok(t, url, 'grant', 'list', 'barn'), /^OWNER +GRANTEE +FILTER +RIGHTS\nfarm +barn +\/farm\/sensors\/# +subscribe,publish\n$/)
    t.equal(await ok(t, url, 'grant', 'rm', 'farm', 'barn', 'sensors/#', '--publish'), 'grant of /farm/sensors/# from farm to barn: now subscribe\n')
    t.equal(await ok(t, url, 'grant', 'rm', 'farm', 'barn', 'sensors/#'), 'grant of /farm/sensors/# from farm to barn: removed\n')
  })

  t.test('rule push compiles first, stores nothing when broken, and bumps the version', async (t) => {
    const url = await initialised(t, db, 'c_rules')
    await db.sql("INSERT INTO accounts (name) VALUES ('farm')", 'c_rules')
    const broken = join(work, 'broken.js')
    writeFileSync(broken, 'export function onMessage(msg) {\n  return 1 +\n}\n')
    const refused = await central(t, url, 'rule', 'push', 'farm', 'broken', broken)
    t.equal(refused.code, 1)
    t.match(refused.stderr, /^perch central: .*broken\.js:3:1: SyntaxError.*; rule farm\/broken not stored\n$/)
    t.same(await column(db, 'c_rules', 'SELECT COUNT(*) FROM rules'), ['0'])

    const good = join(work, 'c2f.js')
    writeFileSync(good, 'export function onMessage(msg) { return JSON.parse(msg.payload).c * 9 / 5 + 32 }\n')
    writeFileSync(join(work, 'c2f.json'), JSON.stringify({ triggers: { topics: ['in/c'] } }))
    const first = /^rule farm\/c2f version (\d+) stored\n$/.exec(await ok(t, url, 'rule', 'push', 'farm', 'c2f', good))
    const second = /^rule farm\/c2f version (\d+) stored\n$/.exec(await ok(t, url, 'rule', 'push', 'farm', 'c2f', good))
    t.ok(first !== null && second !== null && Number(second[1]) > Number(first[1]), 'a push bumps the version')
    t.same(await column(db, 'c_rules', 'SELECT version FROM rules'), [second?.[1]])
    t.match(JSON.parse((await column(db, 'c_rules', 'SELECT manifest FROM rules'))[0] ?? ''), { triggers: { topics: ['in/c'] } })
    const noAccount = await central(t, url, 'rule', 'push', 'barn', 'c2f', good)
    t.equal(noAccount.stderr, 'perch central: no account "barn"\n')
    t.match(await ok(t, url, 'rule', 'disable', 'farm', 'c2f'), /^rule farm\/c2f disabled \(version \d+\)\n$/)
    t.match(await ok(t, url, 'rule', 'list', 'farm'), /^ACCOUNT +NAME +VERSION +ENABLED +BYTES +UPDATED\nfarm +c2f +\d+ +no +\d+ /)
    await ok(t, url, 'rule', 'rm', 'farm', 'c2f')
    const gone = await central(t, url, 'rule', 'rm', 'farm', 'c2f')
    t.equal(gone.stderr, 'perch central: no rule "c2f" of account "farm"\n')
  })

  t.test('epoch reset and prune', async (t) => {
    const url = await initialised(t, db, 'c_upkeep')
    const epoch = async (): Promise<string> => (await column(db, 'c_upkeep', 'SELECT epoch FROM sync_clock'))[0] ?? ''
    const before = await epoch()
    t.equal(await ok(t, url, 'epoch', 'reset'), `epoch ${before} -> ${await epoch()}: every gateway loads everything again\n`)
    t.not(await epoch(), before)

    await ok(t, url, 'gateway', 'add', 'upkeep-gw')
    await db.sql("INSERT INTO accounts (name) VALUES ('farm')", 'c_upkeep')
    await ok(t, url, 'assign', 'upkeep-gw', 'farm')
    // Twelve more changes logged for gw, straight in SQL (the triggers log them as for the CLI).
    await db.sql("UPDATE accounts SET enabled = 1 - enabled WHERE name = 'farm';".repeat(12), 'c_upkeep')
    const seqs = (await column(db, 'c_upkeep', 'SELECT seq FROM change_log ORDER BY seq')).map(Number)
    t.equal(seqs.length, 13)
    const max = Math.max(...seqs)
    const expected = seqs.filter((s) => s <= max - 5).length
    t.equal(await ok(t, url, 'prune', '--keep', '5'), `removed ${expected} change-log rows; pruned up to ${max - 5}\n`)
    t.same((await column(db, 'c_upkeep', 'SELECT seq FROM change_log ORDER BY seq')).map(Number), seqs.filter((s) => s > max - 5))
    t.same(await column(db, 'c_upkeep', 'SELECT pruned_upto FROM sync_prune'), [String(max - 5)])
    t.equal(await ok(t, url, 'prune', '--keep', '5'), `removed 0 change-log rows; pruned up to ${max - 5}\n`)
    const noKeep = await central(t, url, 'prune')
    t.equal(noKeep.code, 2)
    t.match(await ok(t, url, 'status'), new RegExp(`pruned upto ${max - 5}\\nchange log rows 5\\naccounts 1\\n\\nGATEWAY +DB USER +ACCOUNTS\\nupkeep-gw +perch_gw_upkeep-gw +1\\n$`))
  })

  t.test('bad URLs, wrong passwords and closed ports: one line, exit 1, no password', async (t) => {
    await db.createDatabase('c_errors')
    const closed = await freePort()
    const secret = 'very-secret-pw'
    const cases: [string, RegExp][] = [
      [`http://perch_admin:${secret}@127.0.0.1:${db.port}/c_errors`, /^perch central: http:\/\/perch_admin:\*\*\*@127\.0\.0\.1:\d+\/c_errors: the scheme must be mysql:\/\/\n$/],
      [`mysql://perch_admin:${secret}@127.0.0.1:${db.port}/`, /^perch central: .*name one database/],
      [`mysql://perch_admin:${secret}%zz@127.0.0.1:${db.port}/c_errors`, /^perch central: mysql:\/\/perch_admin:\*\*\*@.*malformed %-escape/],
      [`mysql://perch_admin:${secret}@127.0.0.1:${db.port}/c_errors`, /^perch central: the central database refused the login: .*Access denied for user 'perch_admin'/],
      [`mysql://perch_admin:${secret}@127.0.0.1:${closed}/c_errors`, /^perch central: cannot reach the central database: .*ECONNREFUSED/],
    ]
    const results = await Promise.all(cases.map(([url]) => central(t, url, 'status')))
    for (const [i, [url, stderr]] of cases.entries()) {
      const r = results[i] as ToolResult
      t.equal(r.code, 1, `${url} exits 1`)
      t.match(r.stderr, stderr)
      t.equal(r.stderr.split('\n').length, 2, 'one line')
      t.notMatch(r.stderr, secret, 'the password is not printed')
      t.equal(r.stdout, '')
    }
    const admin = db.url('c_errors')
    const usage: string[][] = [['central'], ['central', 'frob'], ['central', 'account', 'add'], ['central', 'init', 'x', '--mysql', admin], ['central', 'init']]
    const [env, help, ...usages] = await Promise.all([
      runPerch(t, work, ['central', 'status'], { PERCH_CENTRAL_URL: admin }),
      runPerch(t, work, ['central', '--help']),
      ...usage.map((args) => runPerch(t, work, args)),
    ])
    for (const [i, args] of usage.entries()) {
      t.equal(usages[i]?.code, 2, `perch ${args.join(' ')} exits 2`)
      t.notMatch(usages[i]?.stderr, ADMIN_PASSWORD)
    }
    t.equal(env.code, 1, 'PERCH_CENTRAL_URL is used when --mysql is absent')
    t.match(env.stderr, /run perch central init/)
    t.equal(help.code, 0)
    t.match(help.stdout, /^Usage: perch central/)
  })
})
