// auth.mode mysql-users: the accounts are the users of a MySQL server. First the login logic
// against a scripted server and a fake clock (trust period, clock going back, which refusals
// drop a cached login, racing checks), then perch with real MQTT clients against a real MariaDB
// that is killed and restarted under it.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { App } from '../../src/app/app.js'
import { defaultConfig, resolveConfig } from '../../src/app/config.js'
import { LOGIN_CACHE_FILE, LoginCache } from '../../src/auth/login-cache.js'
import { type LoginProbe, type LoginVerdict, MysqlUsersHooks, type MysqlUsersSettings } from '../../src/auth/mysql-users-hooks.js'
import { type Clock, FakeClock, systemClock } from '../../src/core/clock.js'
import { createLogger } from '../../src/core/logger.js'
import { parseMysqlUrl, tryLogin } from '../../src/sync/mysql.js'
import { connackCode, pubackCode, subackCodes } from '../helpers/accounts.js'
import { connectWithAck, sleep, until } from '../helpers/clients.js'
import { ADMIN_PASSWORD, type MariaDb, startMariaDb } from '../helpers/mariadb.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const SERVER = '10.0.0.5:3306/gw'

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-mysql-users-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function openCache(dir: string, server = SERVER): LoginCache {
  const opened = LoginCache.open(dir, server)
  if (!opened.ok) throw opened.error
  return opened.value
}

/** A scripted server: its users and passwords, whether it answers, locked accounts; or held answers. */
interface FakeServer {
  users: Map<string, string>
  up: boolean
  locked: Set<string>
  calls: number
  /** When set, each check waits here until the test answers it. */
  held: { user: string; answer(v: LoginVerdict): void }[] | undefined
}

function harness(t: Teardown, settings: Partial<MysqlUsersSettings> = {}, dir = tempDir(t)) {
  const clock = new FakeClock()
  const logs: Record<string, unknown>[] = []
  const logger = createLogger('debug', (line) => logs.push(JSON.parse(line) as Record<string, unknown>), () => clock.now())
  const server: FakeServer = { users: new Map([['alice', 'pw-a'], ['bob', 'pw-b']]), up: true, locked: new Set(), calls: 0, held: undefined }
  const probe: LoginProbe = async (user, password) => {
    server.calls++
    const held = server.held
    if (held !== undefined) return new Promise<LoginVerdict>((answer) => held.push({ user, answer }))
    if (!server.up) return { kind: 'unreachable', detail: 'connect ECONNREFUSED 10.0.0.5:3306' }
    if (server.locked.has(user)) return { kind: 'refused', locked: true, detail: 'account is locked' }
    return server.users.get(user) === password ? { kind: 'accepted' } : { kind: 'refused', locked: false, detail: 'Access denied' }
  }
  const cache = openCache(dir)
  const limit = { maxFailures: 1000, windowMs: 60_000, blockMs: 1000 }
  const hooks = new MysqlUsersHooks(
    { target: 'mysql://db:***@10.0.0.5:3306/gw', trustPeriodMs: 60_000, byAddress: limit, byAccount: limit, retryMs: 1000, refusedMemoryMs: 300_000, ...settings },
    { probe, cache, clock, logger },
  )
  t.teardown(() => hooks.dispose())
  const login = async (user: string | undefined, password: string | Buffer | undefined): Promise<number> => {
    const r = await hooks.authenticate({
      clientId: 'c',
      username: user,
      password: typeof password === 'string' ? Buffer.from(password) : password,
      remoteAddress: '192.0.2.7',
      protocolVersion: 5,
      listener: 'test',
      certificateCommonName: undefined,
    })
    return r.ok ? 0 : r.reasonCode
  }
  return { clock, logs, server, cache, hooks, login, dir }
}

t.test('online, the server decides; a user it accepted logs in offline within the trust period only', async (t) => {
  const h = harness(t)
  t.equal(await h.login('alice', 'pw-a'), 0, 'accepted by the server')
  t.equal(await h.login('alice', 'wrong'), 0x86, 'refused by the server')
  t.equal(await h.login('nobody', 'pw'), 0x86, 'unknown to the server')
  t.match(h.cache.get('alice'), { verifier: /^scrypt\$/ }, 'a salted scrypt verifier is cached')
  t.equal(h.cache.get('nobody'), undefined)

  h.server.up = false
  t.equal(await h.login('alice', 'pw-a'), 0, 'offline: the cached login')
  t.ok(h.hooks.offline)
  t.equal(await h.login('alice', 'wrong'), 0x86, 'offline: a wrong password')
  t.equal(await h.login('bob', 'pw-b'), 0x86, 'offline: a user never seen online here')
  h.clock.advance(59_000)
  t.equal(await h.login('alice', 'pw-a'), 0, 'just inside the trust period')
  h.clock.advance(1000)
  t.equal(await h.login('alice', 'pw-a'), 0x88, 'trust period over: server unavailable')
  t.equal(await h.login('alice', 'wrong'), 0x86, 'a wrong password still says so')
  t.match(h.logs.find((l) => l.event === 'auth.mysql-unreachable'), { level: 'warn', target: 'mysql://db:***@10.0.0.5:3306/gw', fallback: 'login cache' })
})

t.test('a clock that went back below the newest online check grants no offline login', async (t) => {
  const h = harness(t)
  t.equal(await h.login('alice', 'pw-a'), 0)
  h.clock.advance(10_000)
  t.equal(await h.login('bob', 'pw-b'), 0, 'the newest online check, 10 s later')
  h.server.up = false
  h.clock.advance(-5000)
  t.equal(await h.login('alice', 'pw-a'), 0x88, "alice's own check is 5 s old, but the clock is behind bob's")
  t.ok(h.logs.some((l) => l.event === 'auth.clock-untrusted'))
  h.clock.advance(5001)
  t.equal(await h.login('alice', 'pw-a'), 0, 'trusted again once the clock has caught up')

  // The mark survives a restart and the removal of the newest login.
  h.server.up = true
  h.server.users.set('bob', 'changed')
  h.clock.advance(1000)
  t.equal(await h.login('bob', 'pw-b'), 0x86)
  t.equal(h.cache.get('bob'), undefined, "bob's login is dropped")
  h.hooks.dispose()
  const reopened = openCache(h.dir)
  t.teardown(() => reopened.dispose())
  t.equal(reopened.highWater, 1_700_000_010_000, "bob's check time is kept")
  t.ok(reopened.get('alice'))
})

t.test('the cache file: 0600, verifiers only, survives a restart, emptied for another server', async (t) => {
  const dir = tempDir(t)
  const first = harness(t, {}, dir)
  t.equal(await first.login('alice', 'pw-a'), 0)
  t.equal(statSync(join(dir, LOGIN_CACHE_FILE)).mode & 0o777, 0o600)
  first.hooks.dispose()
  const bytes = Buffer.concat([readFileSync(join(dir, LOGIN_CACHE_FILE)), readFileSync(join(dir, `${LOGIN_CACHE_FILE}-wal`), { flag: 'a+' })])
  t.notOk(bytes.includes('pw-a'), 'no password in the file')

  const second = harness(t, {}, dir)
  second.server.up = false
  t.equal(await second.login('alice', 'pw-a'), 0, 'a restarted perch still knows the login')
  second.hooks.dispose()

  const other = openCache(dir, 'elsewhere:3306/gw')
  t.teardown(() => other.dispose())
  t.equal(other.size, 0, 'logins checked on another server are not trusted')
})

t.test('which refusals drop the cached login', async (t) => {
  const h = harness(t)
  t.equal(await h.login('alice', 'pw-a'), 0)
  t.equal(await h.login('alice', 'a-guess'), 0x86)
  t.ok(h.cache.get('alice'), "a stranger's wrong guess keeps alice's offline login")
  h.server.users.set('alice', 'pw-new')
  t.equal(await h.login('alice', 'pw-a'), 0x86, 'the cached password, now refused')
  t.equal(h.cache.get('alice'), undefined, 'is dropped: changed, dropped or no longer allowed')
  t.ok(h.logs.some((l) => l.event === 'auth.login-cache-dropped' && l.account === 'alice'))

  t.equal(await h.login('bob', 'pw-b'), 0)
  h.server.locked.add('bob')
  t.equal(await h.login('bob', 'anything'), 0x86, 'a locked account is refused')
  t.equal(h.cache.get('bob'), undefined, 'and its cached login dropped, whatever password was tried')
  h.server.up = false
  t.equal(await h.login('bob', 'pw-b'), 0x86, 'so it cannot log in offline')
})

t.test('a password the server refused is answered locally for a while', async (t) => {
  const h = harness(t, { refusedMemoryMs: 60_000 })
  t.equal(await h.login('alice', 'stale'), 0x86)
  t.equal(h.server.calls, 1)
  for (let i = 0; i < 5; i++) t.equal(await h.login('alice', 'stale'), 0x86)
  t.equal(h.server.calls, 1, 'retries of the same password never reach the server')
  t.equal(await h.login('alice', 'other'), 0x86)
  t.equal(h.server.calls, 2, 'another password does')
  t.equal(await h.login('bob', 'stale'), 0x86)
  t.equal(h.server.calls, 3, 'and the same password for another user')
  h.clock.advance(60_000)
  t.equal(await h.login('alice', 'stale'), 0x86)
  t.equal(h.server.calls, 4, 'asked again once the memory expired')
})

t.test('failures are rate-limited per account and per address without asking the server', async (t) => {
  const h = harness(t, { byAccount: { maxFailures: 2, windowMs: 60_000, blockMs: 5000 }, byAddress: { maxFailures: 5, windowMs: 60_000, blockMs: 5000 } })
  t.equal(await h.login('alice', 'x1'), 0x86)
  t.equal(await h.login('alice', 'x2'), 0x86)
  t.equal(await h.login('alice', 'x3'), 0x9f, 'blocked')
  t.equal(await h.login('alice', 'pw-a'), 0x9f, 'the right password waits too')
  t.equal(h.server.calls, 2, 'blocked attempts never reach the server')
  t.equal(await h.login('bob', 'pw-b'), 0, 'another user is not blocked')
  h.clock.advance(5000)
  t.equal(await h.login('alice', 'pw-a'), 0, 'after the block')
  for (const user of ['u1', 'u2', 'u3', 'u4', 'u5']) await h.login(user, 'spray')
  t.equal(await h.login('bob', 'pw-b'), 0x9f, 'an address spraying user names is blocked')
})

t.test('what never reaches the server', async (t) => {
  const h = harness(t)
  t.equal(await h.login(undefined, undefined), 0x87, 'anonymous')
  t.equal(await h.login('alice', undefined), 0x86, 'no password')
  t.equal(await h.login('alice', ''), 0x86, 'an empty password')
  t.equal(await h.login('alice', Buffer.from([0xff, 0xfe])), 0x86, 'a password that is not UTF-8')
  for (const user of ['a/b', '+', '#', '$SYS', 'JWT', '', 'x'.repeat(65)]) t.equal(await h.login(user, 'pw'), 0x86, JSON.stringify(user))
  t.equal(h.server.calls, 0)
})

t.test('while the server is unreachable, one login at a time tries it, once per retry period', async (t) => {
  const h = harness(t)
  t.equal(await h.login('alice', 'pw-a'), 0)
  h.server.up = false
  t.equal(await h.login('alice', 'pw-a'), 0)
  t.equal(h.server.calls, 2)
  t.equal(await h.login('alice', 'pw-a'), 0)
  t.equal(await h.login('bob', 'pw-b'), 0x86)
  t.equal(h.server.calls, 2, 'the cache answers within the retry period')
  h.clock.advance(1000)
  t.equal(await h.login('alice', 'pw-a'), 0)
  t.equal(h.server.calls, 3, 'then one login tries the server again')
  h.clock.advance(-60_000)
  t.equal(await h.login('alice', 'pw-a'), 0x88)
  t.equal(h.server.calls, 4, 'a clock that jumped back does not put the next try off')
  h.clock.advance(60_000)
  h.server.up = true
  h.clock.advance(1000)
  t.equal(await h.login('bob', 'pw-b'), 0, 'back online')
  t.notOk(h.hooks.offline)
  t.ok(h.logs.some((l) => l.event === 'auth.mysql-reachable'))
})

t.test('an older check never overwrites the outcome of a newer one', async (t) => {
  const h = harness(t)
  t.equal(await h.login('alice', 'pw-a'), 0)
  h.server.held = []
  const older = h.login('alice', 'pw-a')
  const newer = h.login('alice', 'pw-a')
  await until(() => h.server.held?.length === 2, 2000, 'both checks at the server')
  // Between the two checks the password was changed: the newer one is refused, the older accepted.
  h.server.held[1]?.answer({ kind: 'refused', locked: false, detail: 'Access denied' })
  t.equal(await newer, 0x86)
  t.equal(h.cache.get('alice'), undefined)
  h.clock.advance(120_000)
  h.server.held[0]?.answer({ kind: 'accepted' })
  t.equal(await older, 0)
  t.equal(h.cache.get('alice'), undefined, 'the late acceptance did not bring the old password back')
})

// ---------------------------------------------------------------------------------------------
// perch with real clients against a real MariaDB

/** A real perch in mysql-users mode whose clock can be moved by `shift.ms`. */
async function startPerch(t: Teardown, m: MariaDb, shift: { ms: number }) {
  const dataDir = tempDir(t)
  const resolved = resolveConfig(
    {
      dataDir,
      listeners: [{ name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 0 }],
      sys: { interval: 0 },
      rules: { enabled: false },
      auth: {
        mode: 'mysql-users',
        mysqlUsers: { url: m.url('gw'), trustPeriod: 3600, connectTimeout: 2 },
        rateLimit: { addressFailures: 1000, accountFailures: 2, window: 60, block: 1 },
      },
    },
    defaultConfig(),
    'test config',
  )
  if (!resolved.ok) throw resolved.error
  const system = systemClock()
  const clock: Clock = { now: () => Date.now() + shift.ms, setTimer: (ms, fn) => system.setTimer(ms, fn) }
  const logs: Record<string, unknown>[] = []
  const lines: string[] = []
  const logger = createLogger(
    'debug',
    (line) => {
      lines.push(line)
      logs.push(JSON.parse(line) as Record<string, unknown>)
    },
    () => clock.now(),
  )
  const app = await App.start(resolved.value, { clock, logger, version: 'test' })
  t.teardown(() => app.stop())
  return { app, url: `mqtt://127.0.0.1:${app.listeners[0]?.port ?? 0}`, logs, lines, dataDir }
}

t.test('against a real MariaDB', async (t) => {
  const m = await startMariaDb(t)
  await m.sql(
    `CREATE DATABASE gw;
     CREATE USER 'alice'@'%' IDENTIFIED BY 'alice-pw'; GRANT SELECT ON gw.* TO 'alice'@'%';
     CREATE USER 'bob'@'%' IDENTIFIED BY 'bob-pw'; GRANT SELECT ON gw.* TO 'bob'@'%';
     CREATE USER 'carol'@'%' IDENTIFIED BY 'carol-pw'; GRANT SELECT ON gw.* TO 'carol'@'%';
     CREATE USER 'dave'@'%' IDENTIFIED BY 'dave-pw'; GRANT SELECT ON gw.* TO 'dave'@'%';
     CREATE USER 'eve'@'%' IDENTIFIED BY 'eve-pw';`,
  )
  const shift = { ms: 0 }
  const p = await startPerch(t, m, shift)
  const code = (username: string, password: string | undefined, protocolVersion: 4 | 5 = 5): Promise<number> =>
    connackCode(p.url, { protocolVersion, username, ...(password === undefined ? {} : { password }) })

  await t.test('online: a MySQL user logs in and acts in its own namespace', async (t) => {
    const alice = await connectWithAck(t, p.url, { protocolVersion: 5, username: 'alice', password: 'alice-pw', clientId: 'alice-1' })
    t.same(await subackCodes(alice.client, '/alice/#'), [1])
    t.same(await subackCodes(alice.client, '/bob/#'), [0x87], 'not /bob/#')
    t.equal(await pubackCode(alice.client, '/alice/room/temp', '21.5'), 0)
    t.equal(await pubackCode(alice.client, '/bob/room/temp', '0'), 0x87, 'nor publish there')
    await until(() => alice.messages.some((x) => x.topic === '/alice/room/temp'), 5000, 'own message')
    t.equal(await code('alice', 'alice-pw', 4), 0, 'MQTT 3.1.1 too')
    t.equal(statSync(join(p.dataDir, LOGIN_CACHE_FILE)).mode & 0o777, 0o600)
  })

  await t.test('online refusals', async (t) => {
    t.equal(await code('dave', 'wrong'), 0x86, 'wrong password')
    t.equal(await code('dave', 'wrong-too', 4), 4, 'wrong password, 3.1.1')
    t.equal(await code('nobody', 'pw'), 0x86, 'no such MySQL user')
    t.equal(await code('eve', 'eve-pw'), 0x86, 'a user without access to the database named in the URL')
    t.equal(await code('perch_admin', ADMIN_PASSWORD), 0, 'the URL user is an ordinary login, not a back door')
    t.equal(await code('carol', undefined), 0x86, 'no password')
  })

  await t.test('a burst of wrong passwords is stopped by perch, so MariaDB never locks the account', async (t) => {
    await m.sql('SET GLOBAL max_password_errors = 3')
    t.teardown(() => m.sql('SET GLOBAL max_password_errors = DEFAULT').catch(() => undefined))
    // Without perch in between, three errors lock an account for every host.
    const target = parseMysqlUrl(m.url('gw'), { connectTimeoutMs: 2000, queryTimeoutMs: 2000 })
    if (!target.ok) throw target.error
    for (const guess of ['g1', 'g2', 'g3']) await tryLogin(target.value, 'carol', guess)
    const locked = await tryLogin(target.value, 'carol', 'carol-pw')
    t.match(locked, { ok: false, error: { kind: 'denied', errno: 4150 } }, 'control: carol is blocked by MariaDB itself')

    t.equal(await code('alice', 'alice-pw'), 0)
    t.equal(await code('alice', 'burst-1'), 0x86)
    t.equal(await code('alice', 'burst-2'), 0x86)
    for (let i = 3; i <= 8; i++) t.equal(await code('alice', `burst-${i}`), 0x9f, `attempt ${i} is answered by perch`)
    t.equal(await code('alice', 'alice-pw'), 0x9f, 'the right password waits out the block too')
    await sleep(1100)
    t.equal(await code('alice', 'alice-pw'), 0, 'after the block alice logs in: MariaDB did not lock her')
  })

  await t.test('offline: users seen online log in from the cache, others cannot', async (t) => {
    m.kill('SIGKILL')
    await until(() => {
      try {
        process.kill(m.pid() ?? 0, 0)
        return false
      } catch {
        return true
      }
    }, 10_000, 'mariadbd to die')
    t.equal(await code('alice', 'alice-pw'), 0, 'alice, checked online before')
    const alice = await connectWithAck(t, p.url, { protocolVersion: 5, username: 'alice', password: 'alice-pw' })
    t.same(await subackCodes(alice.client, ['/alice/#', '/bob/#']), [1, 0x87], 'with the same rights')
    t.equal(await code('bob', 'bob-pw'), 0x86, 'bob never logged in here while MariaDB was up')
    t.equal(await code('alice', 'not-hers'), 0x86, 'a wrong password offline')
    await sleep(1100)
    t.equal(await code('alice', 'alice-pw', 4), 0, '3.1.1 offline')
    const warned = p.logs.find((l) => l.event === 'auth.mysql-unreachable')
    t.match(warned, { level: 'warn', target: /\*\*\*@127\.0\.0\.1/ }, 'the fallback is logged with the target redacted')

    shift.ms = 3600_000
    t.equal(await code('alice', 'alice-pw'), 0x88, 'trust period over: server unavailable')
    t.equal(await code('alice', 'alice-pw', 4), 3, '3.1.1: server unavailable')
    shift.ms = -600_000
    t.equal(await code('alice', 'alice-pw'), 0x88, 'the clock went back: untrusted')
    shift.ms = 0
    t.equal(await code('alice', 'alice-pw'), 0, 'the clock is back where it was')
  })

  await t.test('a password changed on MariaDB: the old one is refused online, then offline too', async (t) => {
    await m.start()
    // Within a second of an unanswered attempt, logins use the cache without trying MariaDB.
    await sleep(1100)
    t.equal(await code('alice', 'alice-pw'), 0, 'online again')
    t.equal(p.app.mysqlUsers?.offline, false, 'checked by MariaDB')
    await m.sql("ALTER USER 'alice'@'%' IDENTIFIED BY 'alice-new'")
    t.equal(await code('alice', 'alice-pw'), 0x86, 'the old password, online')
    t.ok(p.logs.some((l) => l.event === 'auth.login-cache-dropped' && l.account === 'alice'))
    await sleep(1100)
    m.kill('SIGKILL')
    await sleep(300)
    t.equal(await code('alice', 'alice-pw'), 0x86, 'the old password, offline: its cached login is gone')
    await sleep(1100)
    t.equal(await code('alice', 'alice-new'), 0x86, 'the new password was never checked online here')
  })

  t.notOk(
    p.lines.some((l) => l.includes(ADMIN_PASSWORD) || l.includes('alice-pw') || l.includes('alice-new')),
    'no password in any log line',
  )
})
