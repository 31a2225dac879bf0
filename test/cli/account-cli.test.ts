// `perch account ...` and `perch grant ...`, run as users run them: `node bin/perch.js`, against
// a data directory at rest and against a running perch that must apply the changes live.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { IDisconnectPacket } from 'mqtt'
import t from 'tap'
import { AccountStore } from '../../src/auth/account-store.js'
import { PasswordChecker } from '../../src/auth/password.js'
import { systemClock } from '../../src/core/clock.js'
import { mosquitto, type ToolResult } from '../helpers/cli.js'
import { collect, connectClient, sleep, until } from '../helpers/clients.js'
import { runPerch, startedPort, startPerch } from '../helpers/perch-bin.js'


// ---------------------------------------------------------------------------------------------
// Running perch

const work = mkdtempSync(join(tmpdir(), 'perch-account-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

interface Teardown {
  teardown(fn: () => unknown): void
}



/** `perch ARGS --data-dir DIR`. */
function perch(t: Teardown, dir: string, ...args: string[]): Promise<ToolResult> {
  return runPerch(t, work, [...args, '--data-dir', dir])
}

/** The password `account add` or `account passwd` made up and printed. */
function printedPassword(r: ToolResult): string {
  const m = /; password: ([A-Za-z0-9_-]{24})\n$/.exec(r.stdout)
  if (m?.[1] === undefined) throw new Error(`no password in ${JSON.stringify(r.stdout)} (stderr: ${r.stderr})`)
  return m[1]
}

interface AccountJson {
  id: string
  admin: boolean
  enabled: boolean
  created: string
}

async function accounts(t: Teardown, dir: string): Promise<AccountJson[]> {
  return JSON.parse((await perch(t, dir, 'account', 'list', '--json')).stdout) as AccountJson[]
}

/** Whether `password` matches what the store holds for `id`, read straight from accounts.db. */
async function storedPasswordIs(dir: string, id: string, password: string): Promise<boolean> {
  const opened = AccountStore.open(dir, systemClock())
  if (!opened.ok) throw opened.error
  try {
    return await new PasswordChecker().verify(id, Buffer.from(password), opened.value.account(id)?.verifier)
  } finally {
    opened.value.dispose()
  }
}

// ---------------------------------------------------------------------------------------------
// Usage

const ACCOUNT_SUBCOMMANDS = ['add', 'list', 'passwd', 'disable', 'enable', 'rm']
const GRANT_SUBCOMMANDS = ['add', 'rm', 'list']

t.test('--help lists every subcommand and the store options', async (t) => {
  const cases: [string[], string[]][] = [
    [['account', '--help'], ACCOUNT_SUBCOMMANDS],
    [['account', '-h'], ACCOUNT_SUBCOMMANDS],
    [['account', 'help'], ACCOUNT_SUBCOMMANDS],
    [['account', 'add', '--help'], ACCOUNT_SUBCOMMANDS],
    [['account', 'list', '-h'], ACCOUNT_SUBCOMMANDS],
    [['grant', '--help'], GRANT_SUBCOMMANDS],
    [['grant', 'add', '-h'], GRANT_SUBCOMMANDS],
  ]
  const results = await Promise.all(cases.map(([args]) => runPerch(t, work, args)))
  for (const [i, [args, subcommands]] of cases.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 0, `perch ${args.join(' ')} exits 0`)
    t.equal(r.stderr, '')
    for (const s of subcommands) t.match(r.stdout, new RegExp(`^  ${s} `, 'm'), `perch ${args.join(' ')} lists ${s}`)
    for (const option of ['--data-dir', '--config', '--help']) t.match(r.stdout, option)
  }
})

t.test('an unknown subcommand or bad flags print the usage on stderr and exit 2', async (t) => {
  const dir = join(work, 'usage')
  const cases: [string[], RegExp][] = [
    [['account'], /^Usage: perch account/],
    [['account', 'frob'], /^perch account: unknown command "frob"\n\nUsage: perch account/],
    [['grant'], /^Usage: perch grant/],
    [['grant', 'frob'], /^perch grant: unknown command "frob"/],
    [['account', 'list', '--bogus', '--data-dir', dir], /^perch account list: .*--bogus/],
    [['account', 'list', '--admin', '--data-dir', dir], /--admin/],
    [['account', 'add', '--data-dir', dir], /^perch account add: expected 1 argument, got 0/],
    [['account', 'add', 'a', 'b', '--data-dir', dir], /expected 1 argument, got 2/],
    [['account', 'disable', '--data-dir', dir], /expected 1 argument/],
    [['account', 'add', 'a', '--password', '--data-dir', dir], /--password/],
    [['grant', 'add', 'a', 'b', '--sub', '--data-dir', dir], /expected 3 arguments, got 2/],
    [['grant', 'add', 'a', 'b', 'x', '--data-dir', dir], /^perch grant add: give --sub, --pub or both\n\nUsage: perch grant/],
    [['grant', 'list', 'a', 'b', '--data-dir', dir], /^perch grant list: expected at most 1 argument, got 2/],
  ]
  const results = await Promise.all(cases.map(([args]) => runPerch(t, work, args)))
  for (const [i, [args, stderr]] of cases.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 2, `perch ${args.join(' ')} exits 2`)
    t.match(r.stderr, stderr)
    t.match(r.stderr, /Usage: perch (account|grant) <command>/)
    t.equal(r.stdout, '')
  }
  t.notOk(existsSync(dir), 'nothing was opened for a command line that did not parse')
})

// ---------------------------------------------------------------------------------------------
// Accounts at rest

t.test('account add, list, passwd, disable, enable and rm', async (t) => {
  const dir = join(work, 'accounts')

  const alice = await perch(t, dir, 'account', 'add', 'alice', '--password', 'alice-secret')
  t.equal(alice.code, 0, alice.stderr)
  t.equal(alice.stdout, 'account alice added\n', 'a given password is not echoed')
  t.ok(await storedPasswordIs(dir, 'alice', 'alice-secret'))

  const bob = await perch(t, dir, 'account', 'add', 'bob')
  t.equal(bob.code, 0, bob.stderr)
  t.match(bob.stdout, /^account bob added; password: /)
  t.ok(await storedPasswordIs(dir, 'bob', printedPassword(bob)), 'the printed password is the stored one')

  const root = await perch(t, dir, 'account', 'add', 'root', '--admin', '--password', 'root-secret')
  t.equal(root.stdout, 'admin account root added\n')

  const twice = await perch(t, dir, 'account', 'add', 'alice', '--password', 'other')
  t.equal(twice.code, 1)
  t.equal(twice.stderr, 'perch account: account "alice" exists\n')
  t.ok(await storedPasswordIs(dir, 'alice', 'alice-secret'), 'the existing account is untouched')

  const names = ['a/b', 'a+b', '#', '', 'JWT', '$sys', 'a b', 'x'.repeat(65)]
  const invalid = await Promise.all(names.map((name) => perch(t, dir, 'account', 'add', name, '--password', 'p')))
  for (const [i, name] of names.entries()) {
    const r = invalid[i] as ToolResult
    t.equal(r.code, 1, `"${name}" is refused`)
    t.match(r.stderr, /^perch account: cannot add ".*": (an account id|"JWT" is reserved)/)
  }
  const empty = await perch(t, dir, 'account', 'add', 'carol', '--password', '')
  t.equal(empty.code, 1)
  t.equal(empty.stderr, 'perch account: a password may not be empty\n')

  const table = await perch(t, dir, 'account', 'list')
  t.equal(table.code, 0)
  const lines = table.stdout.trimEnd().split('\n')
  t.match(lines[0] ?? '', /^ID +ADMIN +ENABLED +CREATED$/)
  t.same(
    lines.slice(1).map((l) => l.split(/ +/).slice(0, 3)),
    [
      ['alice', 'no', 'yes'],
      ['bob', 'no', 'yes'],
      ['root', 'yes', 'yes'],
    ],
  )
  const listed = await accounts(t, dir)
  t.same(
    listed.map(({ id, admin, enabled }) => ({ id, admin, enabled })),
    [
      { id: 'alice', admin: false, enabled: true },
      { id: 'bob', admin: false, enabled: true },
      { id: 'root', admin: true, enabled: true },
    ],
  )
  for (const a of listed) {
    t.same(Object.keys(a).sort(), ['admin', 'created', 'enabled', 'id'], 'no verifier in the listing')
    t.equal(new Date(a.created).toISOString(), a.created, 'created is an ISO time')
  }

  const passwd = await perch(t, dir, 'account', 'passwd', 'alice')
  t.equal(passwd.code, 0, passwd.stderr)
  t.ok(await storedPasswordIs(dir, 'alice', printedPassword(passwd)))
  t.notOk(await storedPasswordIs(dir, 'alice', 'alice-secret'), 'the old password is gone')
  t.equal((await perch(t, dir, 'account', 'passwd', 'alice', '--password', 'new-secret')).stdout, 'password of alice changed\n')
  t.ok(await storedPasswordIs(dir, 'alice', 'new-secret'))

  t.equal((await perch(t, dir, 'account', 'disable', 'bob')).stdout, 'account bob disabled\n')
  t.same((await accounts(t, dir)).find((a) => a.id === 'bob')?.enabled, false)
  t.equal((await perch(t, dir, 'account', 'enable', 'bob')).stdout, 'account bob enabled\n')
  t.same((await accounts(t, dir)).find((a) => a.id === 'bob')?.enabled, true)

  t.equal((await perch(t, dir, 'account', 'rm', 'bob')).code, 0)
  t.same(
    (await accounts(t, dir)).map((a) => a.id),
    ['alice', 'root'],
  )

  const missing = [['passwd', 'bob', '--password', 'x'], ['disable', 'bob'], ['enable', 'bob'], ['rm', 'bob']]
  const results = await Promise.all(missing.map((args) => perch(t, dir, 'account', ...args)))
  for (const [i, args] of missing.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 1, `account ${args.join(' ')} of a missing account exits 1`)
    t.equal(r.stderr, 'perch account: no account "bob"\n')
  }
})

// ---------------------------------------------------------------------------------------------
// Grants at rest

interface GrantJson {
  owner: string
  grantee: string
  filter: string
  publish: boolean
  subscribe: boolean
}

async function grants(t: Teardown, dir: string, ...who: string[]): Promise<GrantJson[]> {
  return JSON.parse((await perch(t, dir, 'grant', 'list', ...who, '--json')).stdout) as GrantJson[]
}

t.test('grant add, rm and list', async (t) => {
  const dir = join(work, 'grants')
  for (const id of ['acme', 'bob', 'carol']) t.equal((await perch(t, dir, 'account', 'add', id, '--password', 'p')).code, 0)

  const relative = await perch(t, dir, 'grant', 'add', 'acme', 'bob', 'sensors/#', '--sub')
  t.equal(relative.code, 0, relative.stderr)
  t.equal(relative.stdout, 'grant of /acme/sensors/# from acme to bob: sub\n', 'a relative filter lies under /OWNER/')
  t.equal((await perch(t, dir, 'grant', 'add', 'acme', 'bob', '/acme/cmd', '--pub')).stdout, 'grant of /acme/cmd from acme to bob: pub\n')
  t.equal((await perch(t, dir, 'grant', 'add', 'acme', 'bob', 'cmd', '--sub')).stdout, 'grant of /acme/cmd from acme to bob: sub,pub\n', 'rights add up')
  t.equal((await perch(t, dir, 'grant', 'add', 'acme', 'carol', '/acme/+/temp', '--sub', '--pub')).code, 0)
  t.equal((await perch(t, dir, 'grant', 'add', 'bob', 'carol', '#', '--sub')).code, 0)

  const refused: [string[], string][] = [
    [['acme', 'bob', '/bob/x', '--sub'], '"/bob/x" is outside /acme/: an account grants only its own topics'],
    [['acme', 'bob', '/acmex/y', '--sub'], '"/acmex/y" is outside /acme/: an account grants only its own topics'],
    [['acme', 'bob', '/acme', '--sub'], '"/acme" is outside /acme/: an account grants only its own topics'],
    [['acme', 'bob', '/+/x', '--sub'], '"/+/x" is outside /acme/: an account grants only its own topics'],
    [['acme', 'bob', '$share/g/x', '--sub'], '"$share/g/x": a grant covers topics, not a shared subscription ($share/...)'],
    [['acme', 'bob', 'a/#/b', '--sub'], `"a/#/b": '#' not last level`],
    [['acme', 'bob', 'a+', '--sub'], `"a+": '+' not alone in its level`],
    [['acme', 'bob', '', '--sub'], 'the topic filter may not be empty'],
    [['acme', 'nobody', 'x', '--sub'], 'no account "nobody"'],
    [['nobody', 'bob', 'x', '--sub'], 'no account "nobody"'],
    [['acme', 'acme', 'x', '--pub'], '"acme" already has every right in its own namespace'],
  ]
  const results = await Promise.all(refused.map(([args]) => perch(t, dir, 'grant', 'add', ...args)))
  for (const [i, [args, message]] of refused.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 1, `grant add ${args.join(' ')} exits 1`)
    t.equal(r.stderr, `perch grant: ${message}\n`)
  }

  const table = await perch(t, dir, 'grant', 'list')
  t.equal(table.code, 0)
  t.same(
    table.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split(/ +/)),
    [
      ['OWNER', 'GRANTEE', 'FILTER', 'RIGHTS'],
      ['acme', 'bob', '/acme/cmd', 'sub,pub'],
      ['acme', 'bob', '/acme/sensors/#', 'sub'],
      ['acme', 'carol', '/acme/+/temp', 'sub,pub'],
      ['bob', 'carol', '/bob/#', 'sub'],
    ],
  )
  t.same(await grants(t, dir, 'bob'), [
    { owner: 'acme', grantee: 'bob', filter: '/acme/cmd', publish: true, subscribe: true },
    { owner: 'acme', grantee: 'bob', filter: '/acme/sensors/#', publish: false, subscribe: true },
    { owner: 'bob', grantee: 'carol', filter: '/bob/#', publish: false, subscribe: true },
  ])
  t.same(
    (await grants(t, dir, 'carol')).map((g) => g.filter),
    ['/acme/+/temp', '/bob/#'],
  )
  t.equal((await grants(t, dir)).length, 4)
  const unknown = await perch(t, dir, 'grant', 'list', 'nobody')
  t.equal(unknown.code, 1)
  t.equal(unknown.stderr, 'perch grant: no account "nobody"\n')

  t.equal((await perch(t, dir, 'grant', 'rm', 'acme', 'bob', 'cmd', '--pub')).stdout, 'grant of /acme/cmd from acme to bob: now sub\n')
  t.equal((await perch(t, dir, 'grant', 'rm', 'acme', 'bob', '/acme/cmd')).stdout, 'grant of /acme/cmd from acme to bob: removed\n')
  t.equal((await perch(t, dir, 'grant', 'rm', 'acme', 'carol', '+/temp', '--sub', '--pub')).stdout, 'grant of /acme/+/temp from acme to carol: removed\n')
  const gone = await perch(t, dir, 'grant', 'rm', 'acme', 'bob', 'cmd')
  t.equal(gone.code, 1)
  t.equal(gone.stderr, 'perch grant: no grant of "/acme/cmd" from "acme" to "bob"\n')
  const outside = await perch(t, dir, 'grant', 'rm', 'acme', 'bob', '/bob/x')
  t.equal(outside.code, 1)
  t.match(outside.stderr, 'is outside /acme/')

  t.equal((await perch(t, dir, 'account', 'rm', 'carol')).code, 0)
  t.same(
    (await grants(t, dir)).map((g) => `${g.owner}>${g.grantee}:${g.filter}`),
    ['acme>bob:/acme/sensors/#'],
    'removing an account removes the grants it received',
  )
  t.equal((await perch(t, dir, 'account', 'rm', 'acme')).code, 0)
  t.same(await grants(t, dir), [], '...and the grants it gave')
})

// ---------------------------------------------------------------------------------------------
// Where the data lives

t.test('the data directory comes from --data-dir, the config file or the environment', async (t) => {
  const fromConfig = join(work, 'from-config')
  const config = join(work, 'accounts-config.json')
  writeFileSync(config, JSON.stringify({ dataDir: fromConfig }))
  const viaConfig = await runPerch(t, work, ['account', 'add', 'cfg', '--password', 'p', '--config', config])
  t.equal(viaConfig.code, 0, viaConfig.stderr)
  t.same(
    (await accounts(t, fromConfig)).map((a) => a.id),
    ['cfg'],
  )
  t.equal(statSync(fromConfig).mode & 0o027, 0, 'a created data directory is not open to others (0750)')

  const flagWins = join(work, 'flag-wins')
  t.equal((await runPerch(t, work, ['account', 'add', 'flag', '--password', 'p', '--config', config, '--data-dir', flagWins])).code, 0)
  t.same(
    (await accounts(t, flagWins)).map((a) => a.id),
    ['flag'],
  )

  const state = join(work, 'state-directory')
  t.equal((await runPerch(t, work, ['account', 'add', 'svc', '--password', 'p'], { STATE_DIRECTORY: state })).code, 0)
  t.same(
    (await accounts(t, state)).map((a) => a.id),
    ['svc'],
  )

  const missing = await runPerch(t, work, ['account', 'list', '--config', join(work, 'no-such.json')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^perch account: config file .*no-such\.json/)
})

t.test('a damaged accounts database is reported, not overwritten', async (t) => {
  const dir = join(work, 'damaged')
  mkdirSync(dir)
  writeFileSync(join(dir, 'accounts.db'), 'this is not a database, just some text that is long enough\n'.repeat(4))
  for (const command of ['account', 'grant']) {
    const r = await perch(t, dir, command, 'list')
    t.equal(r.code, 1)
    t.match(r.stderr, new RegExp(`^perch ${command}: file is not an SQLite database: .*accounts\\.db`))
  }
  t.match(readFileSync(join(dir, 'accounts.db'), 'utf8'), /^this is not a database/)
})

// ---------------------------------------------------------------------------------------------
// Against a running perch




/** Whether mosquitto_pub can log in as `user` and publish in its own namespace. */
async function canLogin(t: Teardown, port: number, user: string, password: string): Promise<boolean> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', password, '-t', `/${user}/login`, '-m', 'hi', '-q', '1']
  return (await mosquitto(t, 'mosquitto_pub', args, 10_000).done).code === 0
}

/**
 * Retries until `attempt` holds: perch polls accounts.db about once a second, so a change shows
 * after a reload. The bound is generous and no duration is asserted. Few failed logins happen
 * this way, far below the login rate limit.
 */
async function eventually(what: string, attempt: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + 15_000
  while (!(await attempt())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(300)
  }
}

t.test('a running perch applies account and grant changes live', async (t) => {
  const dir = join(work, 'live')
  const p = startPerch(t, work, ['--data-dir', dir, '--port', '0'])
  const port = await startedPort(p)
  const url = `mqtt://127.0.0.1:${port}`

  t.match(readFileSync(join(dir, 'admin-password'), 'utf8'), /^account: admin\npassword: \S+\n$/, 'the first start made an admin')
  t.same(
    (await accounts(t, dir)).map((a) => [a.id, a.admin]),
    [['admin', true]],
    'the CLI reads the store perch has open',
  )

  // A new account with a made-up password can log in once perch has reloaded.
  const added = await perch(t, dir, 'account', 'add', 'dave')
  t.equal(added.code, 0, added.stderr)
  const password = printedPassword(added)
  await eventually('dave to log in', () => canLogin(t, port, 'dave', password))
  t.pass('the printed password logs in')

  // Disabling it disconnects its client and refuses new logins; enabling lets it back in.
  const dave = await connectClient(t, url, { protocolVersion: 5, clientId: 'dave-1', username: 'dave', password })
  const disconnects: IDisconnectPacket[] = []
  let closed = false
  dave.on('disconnect', (packet) => disconnects.push(packet))
  dave.on('close', () => {
    closed = true
  })
  t.equal((await perch(t, dir, 'account', 'disable', 'dave')).code, 0)
  await until(() => closed, 15_000, 'the disabled account to be disconnected')
  t.equal(disconnects[0]?.reasonCode, 0x98, 'DISCONNECT 0x98 administrative action')
  t.notOk(await canLogin(t, port, 'dave', password), 'a disabled account cannot log in')
  t.equal((await perch(t, dir, 'account', 'enable', 'dave')).code, 0)
  await eventually('dave to log in again', () => canLogin(t, port, 'dave', password))

  // A new password takes over from the old one.
  const changed = await perch(t, dir, 'account', 'passwd', 'dave')
  const second = printedPassword(changed)
  await eventually('the new password to work', () => canLogin(t, port, 'dave', second))
  t.notOk(await canLogin(t, port, 'dave', password), 'the old password no longer works')

  // A grant lets a subscription of the grantee receive the owner's topic; revoking stops it.
  for (const id of ['acme', 'erin']) t.equal((await perch(t, dir, 'account', 'add', id, '--password', `${id}-pw`)).code, 0)
  await eventually('erin to log in', () => canLogin(t, port, 'erin', 'erin-pw'))
  await eventually('acme to log in', () => canLogin(t, port, 'acme', 'acme-pw'))
  const acme = await connectClient(t, url, { protocolVersion: 5, clientId: 'acme-1', username: 'acme', password: 'acme-pw' })
  const erin = await connectClient(t, url, { protocolVersion: 5, clientId: 'erin-1', username: 'erin', password: 'erin-pw' })
  const received = collect(erin)
  const got = (payload: string): boolean => received.some((m) => m.payload.toString() === payload)
  // '/+/temp' reaches into erin's own namespace, so it is accepted and filtered per message.
  const [granted] = await erin.subscribeAsync('/+/temp', { qos: 1 })
  t.ok(granted !== undefined && granted.qos < 0x80, 'the subscription is accepted')

  let n = 0
  /** Publishes a tagged message as acme, then a marker as erin; true when erin got the tagged one. */
  const delivered = async (): Promise<boolean> => {
    n++
    await acme.publishAsync('/acme/temp', `acme-${n}`, { qos: 1 })
    await erin.publishAsync('/erin/temp', `mark-${n}`, { qos: 1 })
    await until(() => got(`mark-${n}`), 10_000, `marker ${n}`)
    return got(`acme-${n}`)
  }
  t.notOk(await delivered(), 'nothing of acme reaches erin without a grant')

  t.equal((await perch(t, dir, 'grant', 'add', 'acme', 'erin', 'temp', '--sub')).code, 0)
  await eventually('the grant to deliver', delivered)
  t.pass('the granted topic reaches the existing subscription')

  t.equal((await perch(t, dir, 'grant', 'rm', 'acme', 'erin', '/acme/temp')).code, 0)
  await eventually('the revoked grant to stop deliveries', async () => !(await delivered()))
  t.notOk(await delivered(), 'deliveries stay stopped')

  // Removing an account disconnects its clients too.
  let acmeClosed = false
  acme.on('close', () => {
    acmeClosed = true
  })
  t.equal((await perch(t, dir, 'account', 'rm', 'acme')).code, 0)
  await until(() => acmeClosed, 15_000, 'the removed account to be disconnected')
  t.notOk(await canLogin(t, port, 'acme', 'acme-pw'), 'a removed account cannot log in')

  p.tool.kill('SIGTERM')
  const end = await p.tool.done
  t.equal(end.code, 0, 'perch stops cleanly')
})
