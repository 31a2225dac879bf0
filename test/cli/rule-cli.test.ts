// `perch rule ...`, run as users run it: `node bin/perch.js`, against a data directory at rest
// (push, list, rm, run offline, logs) and against a running perch that must pick up pushed,
// replaced and removed rules live.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { systemClock } from '../../src/core/clock.js'
import { RuleStore } from '../../src/scripting/engine/rule-store.js'
import type { ToolResult } from '../helpers/cli.js'
import { connectWithAck, type Received, sleep, until } from '../helpers/clients.js'
import { runPerch, startedPort, startPerch } from '../helpers/perch-bin.js'

const work = mkdtempSync(join(tmpdir(), 'perch-rule-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

interface Teardown {
  teardown(fn: () => unknown): void
}

/** `perch ARGS --data-dir DIR`, run in the work directory (rule files are named relative to it). */
function perch(t: Teardown, dir: string, ...args: string[]): Promise<ToolResult> {
  return runPerch(t, work, [...args, '--data-dir', dir])
}

/** Writes `files` (name -> text) into the work directory. */
function write(files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(work, name), text)
}

/** Reads rules.db of `dir` directly (not through the CLI under test). */
function withStore<T>(dir: string, fn: (store: RuleStore) => T): T {
  const opened = RuleStore.open(dir, systemClock())
  if (!opened.ok) throw opened.error
  try {
    return fn(opened.value)
  } finally {
    opened.value.dispose()
  }
}

/**
 * A data directory with an empty rules.db, for tests that start with commands in parallel: two
 * processes creating the same new database at once race in its migrations.
 */
function freshDir(dir: string): string {
  mkdirSync(dir, { recursive: true })
  withStore(dir, () => undefined)
  return dir
}

interface RuleJson {
  account: string
  name: string
  version: number
  origin: string
  updated: string
}

async function listed(t: Teardown, dir: string, ...account: string[]): Promise<RuleJson[]> {
  const r = await perch(t, dir, 'rule', 'list', ...account, '--json')
  if (r.code !== 0) throw new Error(`rule list: ${r.stderr}`)
  return JSON.parse(r.stdout) as RuleJson[]
}

const COUNTER = `export function onMessage(msg) {
  const n = Number(kv.get('n') ?? '0') + 1
  kv.set('n', String(n))
  kv.delete('old')
  log.info('got ' + msg.payload + ' on ' + msg.topic)
  publish('out/count', { n, payload: msg.payload }, { qos: 1 })
  publish('/elsewhere/x', 'y')
  return { n }
}
`

// ---------------------------------------------------------------------------------------------
// Usage

const SUBCOMMANDS = ['push', 'list', 'rm', 'run', 'logs']

t.test('--help lists every subcommand and the data directory options', async (t) => {
  const cases = [['rule', '--help'], ['rule', 'help'], ['rule', 'run', '-h']]
  const [main, ...results] = await Promise.all([runPerch(t, work, ['--help']), ...cases.map((args) => runPerch(t, work, args))])
  t.match(main?.stdout, /^ {2}rule \.\.\. +push, list, rm, run, logs account rules$/m, 'perch --help names the rule command')
  for (const [i, args] of cases.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 0, `perch ${args.join(' ')} exits 0`)
    t.equal(r.stderr, '')
    for (const s of SUBCOMMANDS) t.match(r.stdout, new RegExp(`^  ${s} `, 'm'), `perch ${args.join(' ')} lists ${s}`)
    for (const option of ['--data-dir', '--config', '--help', '--manifest', '--topic', '--lines', '--json']) t.match(r.stdout, option)
    t.match(r.stdout, 'Nothing is published or stored', 'the help says run has no effects')
  }
})

t.test('an unknown subcommand or a bad command line prints the usage on stderr and exits 2', async (t) => {
  const dir = join(work, 'usage')
  const cases: [string[], RegExp][] = [
    [['rule'], /^Usage: perch rule/],
    [['rule', 'frob'], /^perch rule: unknown command "frob"\n\nUsage: perch rule/],
    [['rule', 'push', 'A', 'n', '--data-dir', dir], /^perch rule push: expected 3 arguments, got 2/],
    [['rule', 'push', 'A', 'n', 'f.js', '--bogus', '--data-dir', dir], /^perch rule push: .*--bogus/],
    [['rule', 'list', 'A', 'B', '--data-dir', dir], /^perch rule list: expected at most 1 argument, got 2/],
    [['rule', 'rm', 'A', '--data-dir', dir], /^perch rule rm: expected 2 arguments, got 1/],
    [['rule', 'run', 'A', '--data-dir', dir], /^perch rule run: expected 2 to 3 arguments, got 1/],
    [['rule', 'logs', 'A', 'n', '--lines', '0', '--data-dir', dir], /^perch rule logs: --lines: "0" is not a positive whole number/],
    [['rule', 'logs', 'A', 'n', '--json', '--data-dir', dir], /--json/],
  ]
  const results = await Promise.all(cases.map(([args]) => runPerch(t, work, args)))
  for (const [i, [args, stderr]] of cases.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 2, `perch ${args.join(' ')} exits 2`)
    t.match(r.stderr, stderr)
    t.match(r.stderr, /Usage: perch rule <command>/)
    t.equal(r.stdout, '')
  }
  t.notOk(existsSync(dir), 'nothing was opened for a command line that did not parse')
})

// ---------------------------------------------------------------------------------------------
// At rest

t.test('push compiles and stores a rule with its manifest; list and rm', async (t) => {
  const dir = join(work, 'push')
  write({
    'counter.js': COUNTER,
    'counter.json': JSON.stringify({ triggers: { topics: ['in/#'] }, limits: { timeMs: 100 } }),
    'other.json': JSON.stringify({ name: 'counter', triggers: { interval: 5 } }),
    'plain.mjs': COUNTER,
  })

  // Open mode: the data directory has no accounts.db, so any account id is taken.
  const first = await perch(t, dir, 'rule', 'push', 'acme', 'counter', 'counter.js')
  t.equal(first.code, 0, first.stderr)
  t.equal(first.stdout, 'rule acme/counter version 1 stored\n')
  t.notOk(existsSync(join(dir, 'accounts.db')), 'no accounts.db was created')
  const stored = withStore(dir, (s) => s.rule('acme', 'counter'))
  t.equal(stored?.source, COUNTER)
  t.equal(stored?.origin, 'cli')
  t.same(JSON.parse(stored?.manifest ?? '{}').triggers, { topics: ['in/#'] }, 'counter.json next to counter.js is the manifest')
  t.same(JSON.parse(stored?.manifest ?? '{}').limits, { timeMs: 100 })

  const [second, plain] = await Promise.all([
    perch(t, dir, 'rule', 'push', 'acme', 'counter', 'counter.js', '--manifest', 'other.json'),
    perch(t, dir, 'rule', 'push', 'bob', 'plain', 'plain.mjs'),
  ])
  t.equal(second.stdout, 'rule acme/counter version 2 stored\n')
  t.same(JSON.parse(withStore(dir, (s) => s.rule('acme', 'counter'))?.manifest ?? '{}').triggers, { interval: 5 }, '--manifest wins')
  t.equal(plain.stdout, 'rule bob/plain version 1 stored\n')
  t.same(JSON.parse(withStore(dir, (s) => s.rule('bob', 'plain'))?.manifest ?? '{}').triggers, {}, 'no manifest: no triggers')

  const [table, all, ofBob, ofNobody] = await Promise.all([perch(t, dir, 'rule', 'list'), listed(t, dir), listed(t, dir, 'bob'), listed(t, dir, 'nobody')])
  t.equal(table.code, 0, table.stderr)
  t.same(
    table.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split(/ +/).slice(0, 4)),
    [
      ['ACCOUNT', 'NAME', 'VERSION', 'ORIGIN'],
      ['acme', 'counter', '2', 'cli'],
      ['bob', 'plain', '1', 'cli'],
    ],
  )
  t.same(
    all.map(({ account, name, version, origin }) => ({ account, name, version, origin })),
    [
      { account: 'acme', name: 'counter', version: 2, origin: 'cli' },
      { account: 'bob', name: 'plain', version: 1, origin: 'cli' },
    ],
  )
  for (const r of all) t.equal(new Date(r.updated).toISOString(), r.updated, 'updated is an ISO time')
  t.same(
    ofBob.map((r) => r.name),
    ['plain'],
  )
  t.same(ofNobody, [])

  const removed = await perch(t, dir, 'rule', 'rm', 'bob', 'plain')
  t.equal(removed.stdout, 'rule bob/plain removed\n')
  const again = await perch(t, dir, 'rule', 'rm', 'bob', 'plain')
  t.equal(again.code, 1)
  t.equal(again.stderr, 'perch rule: no rule "plain" of account "bob"\n')
  t.same(
    (await listed(t, dir)).map((r) => r.name),
    ['counter'],
  )
})

t.test('a push that does not compile or whose manifest is wrong stores nothing', async (t) => {
  const dir = freshDir(join(work, 'refused'))
  write({
    'broken.js': 'export function onMessage(msg) {\n  const x = (1 +\n}\n',
    'nohandler.js': 'export const x = 1\n',
    'throws.js': 'throw new Error("at load")\nexport function onMessage() {}\n',
    'ok.js': 'export function onMessage() {}\n',
    'notjson.json': '{ triggers',
    'badschema.json': JSON.stringify({ triggers: { interval: 0 } }),
    'othername.json': JSON.stringify({ name: 'different' }),
    'otheraccount.json': JSON.stringify({ account: 'bob' }),
    'badfilter.json': JSON.stringify({ triggers: { topics: ['a/#/b'] } }),
  })
  const cases: [string[], RegExp][] = [
    [['acme', 'broken', 'broken.js'], /^perch rule: broken\.js:3:1: SyntaxError: .*; rule acme\/broken not stored\n$/],
    [['acme', 'nohandler', 'nohandler.js'], /^perch rule: nohandler\.js: a rule must export a function onMessage, onTimer or onEvent/],
    [['acme', 'throws', 'throws.js'], /^perch rule: throws\.js: Error: at load/],
    [['acme', 'ok', 'ok.js', '--manifest', 'notjson.json'], /^perch rule: notjson\.json: the manifest is not JSON: /],
    [['acme', 'ok', 'ok.js', '--manifest', 'badschema.json'], /^perch rule: badschema\.json: manifest: .*interval/],
    [['acme', 'ok', 'ok.js', '--manifest', 'othername.json'], /^perch rule: othername\.json: manifest: name "different" is not the rule's name "ok"\n$/],
    [['acme', 'ok', 'ok.js', '--manifest', 'otheraccount.json'], /manifest: account "bob" is not the rule's account "acme"/],
    [['acme', 'ok', 'ok.js', '--manifest', 'badfilter.json'], /^perch rule: trigger "\/acme\/a\/#\/b": /],
    [['acme', 'ok', 'ok.js', '--manifest', 'missing.json'], /^perch rule: cannot read manifest missing\.json: /],
    [['acme', 'ok', 'missing.js'], /^perch rule: cannot read rule missing\.js: /],
    [['acme', 'bad name', 'ok.js'], /^perch rule: rule name "bad name": /],
    [['acme', 'file.ok', 'ok.js'], /^perch rule: rule names starting with "file\." are for file rules\n$/],
    [['a/b', 'ok', 'ok.js'], /^perch rule: cannot push to "a\/b": an account id may not contain/],
  ]
  const results = await Promise.all(cases.map(([args]) => perch(t, dir, 'rule', 'push', ...args)))
  for (const [i, [args, stderr]] of cases.entries()) {
    const r = results[i] as ToolResult
    t.equal(r.code, 1, `rule push ${args.join(' ')} exits 1`)
    t.match(r.stderr, stderr)
    t.equal(r.stdout, '')
  }
  t.same(await listed(t, dir), [], 'nothing was stored')
})

t.test('with accounts, push needs an existing account and triggers it may read', async (t) => {
  const dir = join(work, 'accounts')
  for (const id of ['acme', 'bob']) t.equal((await perch(t, dir, 'account', 'add', id, '--password', 'pw')).code, 0)
  write({ 'watch.js': 'export function onMessage() {}\n', 'watch.json': JSON.stringify({ triggers: { topics: ['x', '/bob/feed/#'] } }) })

  const [unknown, outside] = await Promise.all([
    perch(t, dir, 'rule', 'push', 'carol', 'watch', 'watch.js'),
    perch(t, dir, 'rule', 'push', 'acme', 'watch', 'watch.js'),
  ])
  t.equal(unknown.code, 1)
  t.equal(unknown.stderr, 'perch rule: no account "carol"\n')
  t.equal(outside.code, 1)
  t.equal(outside.stderr, "perch rule: triggers outside the account's read rights: /bob/feed/#\n")
  t.same(await listed(t, dir), [])

  t.equal((await perch(t, dir, 'grant', 'add', 'bob', 'acme', 'feed/#', '--sub')).code, 0)
  const granted = await perch(t, dir, 'rule', 'push', 'acme', 'watch', 'watch.js')
  t.equal(granted.code, 0, granted.stderr)
  t.equal(granted.stdout, 'rule acme/watch version 1 stored\n', 'a grant to read makes the trigger acceptable')
})

t.test('run runs a stored rule once, offline, with the account KV, and stores nothing', async (t) => {
  const dir = freshDir(join(work, 'run'))
  write({
    'counter.js': COUNTER,
    'failing.js': 'export function onMessage(msg) {\n  if (msg.payload === "spin") for (;;) {}\n  throw new Error("no good: " + msg.payload)\n}\n',
    'quiet.js': 'export function onMessage() {}\n',
  })
  const pushed = await Promise.all(['counter', 'failing', 'quiet'].map((n) => perch(t, dir, 'rule', 'push', 'acme', n, `${n}.js`)))
  for (const r of pushed) t.equal(r.code, 0, r.stderr)
  withStore(dir, (s) => s.flush(new Map([['acme', new Map([['n', '41'], ['old', 'x']])]]), []))

  const [payload, topic, empty, quiet, failing, spinning, missing, badTopic] = await Promise.all([
    perch(t, dir, 'rule', 'run', 'acme', 'counter', 'hello'),
    perch(t, dir, 'rule', 'run', 'acme', 'counter', '21.5', '--topic', 'in/temp'),
    perch(t, dir, 'rule', 'run', 'acme', 'counter', '--topic', '/acme/abs'),
    perch(t, dir, 'rule', 'run', 'acme', 'quiet'),
    perch(t, dir, 'rule', 'run', 'acme', 'failing', 'x'),
    perch(t, dir, 'rule', 'run', 'acme', 'failing', 'spin'),
    perch(t, dir, 'rule', 'run', 'acme', 'nothing'),
    perch(t, dir, 'rule', 'run', 'acme', 'counter', '--topic', 'in/#'),
  ])
  t.equal(payload?.code, 0, payload?.stderr)
  t.same(JSON.parse(payload?.stdout ?? ''), {
    publishes: [
      { topic: '/acme/out/count', payload: '{"n":42,"payload":"hello"}', qos: 1, retain: false },
      { topic: '/elsewhere/x', payload: 'y', qos: 0, retain: false },
    ],
    kv: [
      { key: 'n', value: '42' },
      { key: 'old', deleted: true },
    ],
    logs: [{ level: 'info', message: 'got hello on /acme/run/counter' }],
    returned: { n: 42 },
  })
  t.same(JSON.parse(topic?.stdout ?? '').logs, [{ level: 'info', message: 'got 21.5 on /acme/in/temp' }], '--topic is relative to /ACCOUNT/')
  t.same(JSON.parse(empty?.stdout ?? '').logs, [{ level: 'info', message: 'got  on /acme/abs' }], 'the payload defaults to empty')
  t.same(JSON.parse(quiet?.stdout ?? ''), { publishes: [], kv: [], logs: [] }, 'no return value, no "returned"')

  t.equal(failing?.code, 1)
  t.match(failing?.stderr, /^perch rule: rule acme\/failing failed: runtime: Error: no good: x/)
  t.equal(failing?.stdout, '')
  t.equal(spinning?.code, 1)
  t.match(spinning?.stderr, /^perch rule: rule acme\/failing failed: timeout: /)
  t.equal(missing?.code, 1)
  t.equal(missing?.stderr, 'perch rule: no rule "nothing" of account "acme"\n')
  t.equal(badTopic?.code, 1)
  t.match(badTopic?.stderr, /^perch rule: --topic "\/acme\/in\/#": /)

  t.same(
    withStore(dir, (s) => s.kv('acme')),
    { n: '41', old: 'x' },
    'the KV writes were not stored',
  )
  t.same(
    withStore(dir, (s) => s.logs('acme', 'counter', 10)),
    [],
    'no log line was stored',
  )
})

t.test('logs prints the last lines of a rule', async (t) => {
  const dir = join(work, 'logs')
  write({ 'logger.js': 'export function onMessage() {}\n' })
  t.equal((await perch(t, dir, 'rule', 'push', 'acme', 'logger', 'logger.js')).code, 0)
  const none = await perch(t, dir, 'rule', 'logs', 'acme', 'logger')
  t.equal(none.code, 0, none.stderr)
  t.equal(none.stdout, '', 'a rule without log lines prints nothing')

  const base = Date.UTC(2030, 0, 2, 3, 4, 5)
  const lines = Array.from({ length: 60 }, (_, i) => ({
    account: 'acme',
    name: 'logger',
    line: { at: base + i * 1000, level: i % 2 === 0 ? 'info' : 'error', message: `line ${i}` },
  }))
  lines.push({ account: 'acme', name: 'logger', line: { at: base + 60_000, level: 'warn', message: 'two\nlines\u001b[2J' } })
  withStore(dir, (s) => s.flush(new Map(), lines))

  const [dflt, three, missing] = await Promise.all([
    perch(t, dir, 'rule', 'logs', 'acme', 'logger'),
    perch(t, dir, 'rule', 'logs', 'acme', 'logger', '--lines', '3'),
    perch(t, dir, 'rule', 'logs', 'acme', 'nothing'),
  ])
  t.equal(dflt?.code, 0, dflt?.stderr)
  const printed = dflt?.stdout.trimEnd().split('\n') ?? []
  t.equal(printed.length, 50, '50 lines by default')
  t.equal(printed[0], '2030-01-02T03:04:16.000Z  error  line 11', 'oldest first')
  t.equal(three?.stdout, ['2030-01-02T03:05:03.000Z  info   line 58', '2030-01-02T03:05:04.000Z  error  line 59', '2030-01-02T03:05:05.000Z  warn   two\\u000alines\\u001b[2J', ''].join('\n'), 'control characters are escaped')
  t.equal(missing?.code, 1)
  t.equal(missing?.stderr, 'perch rule: no rule "nothing" of account "acme"\n')

  t.equal((await perch(t, dir, 'rule', 'rm', 'acme', 'logger')).code, 0)
  const gone = await perch(t, dir, 'rule', 'logs', 'acme', 'logger')
  t.equal(gone.code, 1, 'rm removes the log with the rule')
})

t.test('the data directory comes from --config too; a damaged rules.db is reported', async (t) => {
  const fromConfig = join(work, 'from-config')
  const config = join(work, 'rules-config.json')
  writeFileSync(config, JSON.stringify({ dataDir: fromConfig }))
  write({ 'cfg.js': 'export function onMessage() {}\n' })
  const pushed = await runPerch(t, work, ['rule', 'push', 'acme', 'cfg', 'cfg.js', '--config', config])
  t.equal(pushed.code, 0, pushed.stderr)
  t.same(
    (await listed(t, fromConfig)).map((r) => r.name),
    ['cfg'],
  )

  const damaged = join(work, 'damaged')
  mkdirSync(damaged)
  writeFileSync(join(damaged, 'rules.db'), 'this is not a database, just some text that is long enough\n'.repeat(4))
  const r = await perch(t, damaged, 'rule', 'list')
  t.equal(r.code, 1)
  t.match(r.stderr, /^perch rule: file is not an SQLite database: .*rules\.db/)
  t.match(readFileSync(join(damaged, 'rules.db'), 'utf8'), /^this is not a database/)
})

// ---------------------------------------------------------------------------------------------
// Against a running perch

/** Celsius to Fahrenheit (version 1) or to kelvin (version 2), tagged with the request's id. */
function c2f(version: 1 | 2): string {
  const convert = version === 1 ? '{ f: c * 9 / 5 + 32 }' : '{ k: c + 273.15 }'
  return `export function onMessage(msg) {
  const { id, c } = JSON.parse(msg.payload)
  const out = { v: ${version}, id, ...${convert} }
  publish('out/temp', out)
  return out
}
`
}

t.test('a running perch picks up pushed, replaced and removed rules', async (t) => {
  const dir = join(work, 'live')
  const p = startPerch(t, work, ['--data-dir', dir, '--port', '0'])
  const port = await startedPort(p)
  const url = `mqtt://127.0.0.1:${port}`
  t.match(readFileSync(join(dir, 'admin-password'), 'utf8'), /^account: admin\n/, 'perch runs in accounts mode')

  t.equal((await perch(t, dir, 'account', 'add', 'A', '--password', 'pw')).code, 0)
  // perch reloads accounts.db about once a second: A can log in after that.
  let client: Awaited<ReturnType<typeof connectWithAck>> | undefined
  for (const end = Date.now() + 15_000; client === undefined; await sleep(200)) {
    try {
      client = await connectWithAck(t, url, { protocolVersion: 5, clientId: 'A-1', username: 'A', password: 'pw' })
    } catch (e) {
      if (Date.now() > end) throw e
    }
  }
  const { client: a, messages } = client
  await a.subscribeAsync('/A/#', { qos: 1 })
  const on = (topic: string): Received[] => messages.filter((m) => m.topic === topic)
  const json = (m: Received | undefined): Record<string, unknown> | undefined => (m === undefined ? undefined : (JSON.parse(m.payload.toString()) as Record<string, unknown>))

  let seq = 0
  /** Publishes a reading on /A/in/c and waits for the rule's answer to it on /A/out/temp. */
  const convert = async (c: number): Promise<Record<string, unknown> | undefined> => {
    const id = `r${++seq}`
    await a.publishAsync('/A/in/c', JSON.stringify({ id, c }), { qos: 1 })
    await until(() => on('/A/out/temp').some((m) => json(m)?.id === id), 10_000, `the answer to ${id}`)
    return json(on('/A/out/temp').find((m) => json(m)?.id === id))
  }
  /** Asks /A/run/c2f (answered even when there is no such rule) and returns the answer. */
  const run = async (): Promise<Record<string, unknown> | undefined> => {
    const before = on('/A/run/c2f/result').length
    await a.publishAsync('/A/run/c2f', JSON.stringify({ id: `run${++seq}`, c: 0 }), { qos: 1 })
    await until(() => on('/A/run/c2f/result').length > before, 10_000, 'the answer on /A/run/c2f/result')
    return json(on('/A/run/c2f/result')[before])
  }
  /** Retries until `attempt` holds: perch polls rules.db about once a second; no duration is asserted. */
  const eventually = async (what: string, attempt: () => Promise<boolean>): Promise<void> => {
    const end = Date.now() + 15_000
    while (!(await attempt())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await sleep(200)
    }
  }

  write({ 'c2f.js': c2f(1), 'c2f.json': JSON.stringify({ name: 'c2f', triggers: { topics: ['in/c'] } }) })
  const v1 = await perch(t, dir, 'rule', 'push', 'A', 'c2f', 'c2f.js')
  t.equal(v1.stdout, 'rule A/c2f version 1 stored\n', v1.stderr)
  await eventually('perch to load c2f', async () => (await run())?.v === 1)
  t.same(await convert(100), { v: 1, id: `r${seq}`, f: 212 }, 'a reading on in/c is converted by version 1')

  write({ 'c2f.js': c2f(2) })
  const v2 = await perch(t, dir, 'rule', 'push', 'A', 'c2f', 'c2f.js')
  t.equal(v2.stdout, 'rule A/c2f version 2 stored\n', v2.stderr)
  await eventually('version 2 to replace version 1', async () => (await convert(0))?.v === 2)
  t.same(await convert(100), { v: 2, id: `r${seq}`, k: 373.15 }, 'version 2 answers from now on')

  write({ 'c2f-broken.js': 'export function onMessage( {\n' })
  const broken = await perch(t, dir, 'rule', 'push', 'A', 'c2f', 'c2f-broken.js')
  t.equal(broken.code, 1, 'a broken version is refused')
  t.equal((await convert(1))?.v, 2, 'and version 2 keeps running')

  t.equal((await perch(t, dir, 'rule', 'rm', 'A', 'c2f')).stdout, 'rule A/c2f removed\n')
  await eventually('perch to remove c2f', async () => (await run())?.ok === false)
  t.same(json(on('/A/run/c2f/result').at(-1)), { ok: false, error: 'no rule "c2f"' })
  await a.publishAsync('/A/in/c', JSON.stringify({ id: 'after-rm', c: 5 }), { qos: 1 })
  await a.publishAsync('/A/mark', 'after-rm', { qos: 1 })
  await until(() => on('/A/mark').length > 0, 10_000, 'the marker')
  t.notOk(
    on('/A/out/temp').some((m) => json(m)?.id === 'after-rm'),
    'a reading after rm is not converted',
  )

  p.tool.kill('SIGTERM')
  t.equal((await p.tool.done).code, 0, 'perch stops cleanly')
})
