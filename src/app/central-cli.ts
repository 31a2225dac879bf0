// `perch central ...`: the central MySQL/MariaDB database that gateways sync from, administered
// over an admin URL. Arguments are checked here; the SQL lives in sync/central-*.ts.
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { accountIdProblem } from '../auth/account-id.js'
import { hashPassword, randomPassword } from '../auth/password.js'
import { describeError } from '../core/errors.js'
import { reservedRuleName } from '../scripting/engine/control.js'
import { manifestJson } from '../scripting/engine/manifest.js'
import * as admin from '../sync/central-admin.js'
import { type CentralResult, describeCentralError } from '../sync/central-common.js'
import { addGateway, gatewayConfig, listGateways, removeGateway } from '../sync/central-gateways.js'
import { initSchema, prune, resetEpoch, status } from '../sync/central-maintenance.js'
import { listRules, pushRule, removeRule, setRuleEnabled } from '../sync/central-rules.js'
import { MysqlSession, type MysqlTarget, parseMysqlUrl, redact } from '../sync/mysql.js'
import { CliFailure, flag, type Options, str, table, UsageError, type Values, yesNo } from './account-cli-common.js'
import { ownFilter } from './account-cli-grant.js'
import { CENTRAL_HELP } from './central-help.js'
import type { Io } from './cli.js'
import { SYNC_DEFAULTS } from './config.js'
import { checkTriggers, compile, manifestFor, readText } from './rule-cli-sandbox.js'

/** Statements of the administration (DDL, pruning batches) may take longer than a gateway's polls. */
const QUERY_TIMEOUT_MS = 60_000
/** The central schema's filter column. */
const MAX_FILTER_CHARS = 255


interface Ctx {
  readonly positionals: readonly string[]
  readonly values: Values
  readonly target: MysqlTarget
  /** The admin connection, opened on first use; the runner closes it. */
  db(): Promise<MysqlSession>
  /** A line for stderr (stdout may be a config file). */
  note(text: string): void
}

interface Command {
  readonly arity: readonly [number, number]
  readonly options?: Options
  run(ctx: Ctx): Promise<string>
}

type Call<T> = (s: MysqlSession) => Promise<CentralResult<T>>

/** The value of an administration call, or its failure as a CliFailure. */
function must<T>(r: CentralResult<T>): T {
  if (r.ok) return r.value
  throw new CliFailure(describeCentralError(r.error))
}

/** Runs `call` on the admin connection and unwraps its result. */
async function sql<T>(ctx: Ctx, call: Call<T>): Promise<T> {
  return must(await call(await ctx.db()))
}

const at = (ctx: Ctx, i: number): string => ctx.positionals[i] ?? ''

/** A command of `arity` positionals making one call and saying what it did. */
function simple<T>(arity: number, call: (s: MysqlSession, a: string, b: string) => Promise<CentralResult<T>>, said: (a: string, b: string, r: T) => string): Command {
  return {
    arity: [arity, arity],
    async run(ctx) {
      const [a, b] = [at(ctx, 0), at(ctx, 1)]
      return `${said(a, b, await sql(ctx, (s) => call(s, a, b)))}\n`
    },
  }
}

/** A listing: a table, or JSON with --json. */
function listing<T>(arity: number, extra: Options, call: (ctx: Ctx) => Call<T[]>, header: readonly string[], cells: (x: T) => string[]): Command {
  return {
    arity: [0, arity],
    options: { json: { type: 'boolean' }, ...extra },
    async run(ctx) {
      const rows = await sql(ctx, call(ctx))
      return flag(ctx.values, 'json') ? `${JSON.stringify(rows, null, 2)}\n` : table(header, rows.map(cells))
    },
  }
}

/** The password of `account add|passwd`: --password P, --password - (stdin), --password-file F, or made up. */
function chosenPassword(values: Values): { password: string; generated: boolean } {
  const [given, file] = [str(values, 'password'), str(values, 'password-file')]
  if (given !== undefined && file !== undefined) throw new UsageError('give --password or --password-file, not both')
  const input = file !== undefined || given === '-'
  const read = file !== undefined ? readText(file, 'password file') : given === '-' ? readStdin() : given
  if (read === undefined) return { password: randomPassword(), generated: true }
  // A file or a pipe ends with a newline that is not part of the password.
  const password = input ? read.replace(/\r?\n$/, '') : read
  if (password === '') throw new CliFailure('a password may not be empty')
  return { password, generated: false }
}

/** fd 0, not /dev/stdin: a socket (as a spawning process may give) cannot be opened by path. */
function readStdin(): string {
  try {
    return readFileSync(0, 'utf8')
  } catch (e) {
    throw new CliFailure(`cannot read the password from stdin: ${describeError(e)}`)
  }
}

const PASSWORD_OPTIONS: Options = { password: { type: 'string' }, 'password-file': { type: 'string' } }
const RIGHTS_OPTIONS: Options = { publish: { type: 'boolean' }, subscribe: { type: 'boolean' }, pub: { type: 'boolean' }, sub: { type: 'boolean' } }

/** --publish/--subscribe (or --pub/--sub, as in perch grant); `all` when neither is given. */
function rightsOf(values: Values, all: boolean): admin.Rights {
  const r = { publish: flag(values, 'publish') || flag(values, 'pub'), subscribe: flag(values, 'subscribe') || flag(values, 'sub') }
  return all && !r.publish && !r.subscribe ? { publish: true, subscribe: true } : r
}

const rightsText = (r: admin.Rights): string => [r.subscribe ? 'subscribe' : '', r.publish ? 'publish' : ''].filter((x) => x !== '').join(',')

/** The grant's absolute filter, checked as `perch grant` checks it and against the central column. */
function grantFilter(ctx: Ctx): { owner: string; grantee: string; filter: string } {
  const [owner, grantee, name] = [at(ctx, 0), at(ctx, 1), at(ctx, 2)]
  const filter = ownFilter(owner, name)
  if (filter.length > MAX_FILTER_CHARS) throw new CliFailure(`"${name}": the central database keeps filters of at most ${MAX_FILTER_CHARS} characters`)
  return { owner, grantee, filter }
}

function portArg(given: string | undefined, fallback: number): number {
  if (given === undefined) return fallback
  if (!/^[0-9]{1,5}$/.test(given) || Number(given) < 1 || Number(given) > 65_535) throw new UsageError(`--port: "${given}" is not a port number (1-65535)`)
  return Number(given)
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`

const COMMANDS: Readonly<Record<string, Command>> = {
  init: simple(0, initSchema, (_a, _b, r) =>
    r.from === r.to ? `central schema is up to date (version ${r.to})` : `central schema initialised: version ${r.from} -> ${r.to}`,
  ),
  status: {
    arity: [0, 0],
    options: { json: { type: 'boolean' } },
    async run(ctx) {
      const st = await sql(ctx, status)
      if (flag(ctx.values, 'json')) return `${JSON.stringify(st, null, 2)}\n`
      const about = `schema version ${st.version}\ncounter ${st.counter}\nepoch ${st.epoch}\npruned upto ${st.prunedUpto}\n`
      const counts = `change log rows ${st.changeLogRows}\naccounts ${st.accounts}\n\n`
      return `${about}${counts}${table(['GATEWAY', 'DB USER', 'ACCOUNTS'], st.gateways.map((g) => [g.name, g.dbUser, String(g.accounts)]))}`
    },
  },
  'gateway add': {
    arity: [1, 1],
    options: { host: { type: 'string' }, port: { type: 'string' }, 'gateway-host': { type: 'string' } },
    async run(ctx) {
      const host = str(ctx.values, 'host') ?? ctx.target.host
      if (host === '') throw new UsageError('--host may not be empty')
      const port = portArg(str(ctx.values, 'port'), ctx.target.port)
      const g = await sql(ctx, (s) => addGateway(s, ctx.target.database, at(ctx, 0), str(ctx.values, 'gateway-host') ?? '%'))
      ctx.note(`gateway ${g.name} added with MySQL user '${g.dbUser}'@'${g.hostPattern}'; its config (on stdout) holds its password: keep it secret\n`)
      return `${JSON.stringify(gatewayConfig(ctx.target, g, host, port))}\n`
    },
  },
  'gateway list': listing(0, {}, () => listGateways, ['NAME', 'DB USER', 'ACCOUNTS'], (g) => [g.name, g.dbUser, String(g.accounts)]),
  'gateway rm': simple(1, removeGateway, (name, _b, r) => {
    const users = r.users.length === 0 ? 'its MySQL user was gone already' : `dropped ${r.users.join(', ')}`
    return `gateway ${name} removed: ${users}; unassigned ${plural(r.accounts, 'account')}`
  }),
  'account add': {
    arity: [1, 1],
    options: { ...PASSWORD_OPTIONS, admin: { type: 'boolean' }, disabled: { type: 'boolean' } },
    async run(ctx) {
      const name = at(ctx, 0)
      const problem = accountIdProblem(name)
      if (problem !== null) throw new CliFailure(`cannot add "${name}": ${problem}`)
      const { password, generated } = chosenPassword(ctx.values)
      const flags = { admin: flag(ctx.values, 'admin'), enabled: !flag(ctx.values, 'disabled') }
      const verifier = await hashPassword(password)
      await sql(ctx, (s) => admin.addAccount(s, name, verifier, flags))
      const what = `${flags.admin ? 'admin account' : 'account'} ${name} added${flags.enabled ? '' : ' (disabled)'}`
      return `${what}${generated ? `; password: ${password}` : ''}\n`
    },
  },
  'account list': listing(
    0,
    { gateway: { type: 'string' } },
    (ctx) => (s) => admin.listAccounts(s, str(ctx.values, 'gateway')),
    ['NAME', 'ADMIN', 'ENABLED', 'VERSION', 'GATEWAYS'],
    (a) => [a.name, yesNo(a.admin), yesNo(a.enabled), String(a.version), a.gateways.join(',')],
  ),
  'account passwd': {
    arity: [1, 1],
    options: PASSWORD_OPTIONS,
    async run(ctx) {
      const { password, generated } = chosenPassword(ctx.values)
      const verifier = await hashPassword(password)
      await sql(ctx, (s) => admin.setVerifier(s, at(ctx, 0), verifier))
      return `password of ${at(ctx, 0)} changed${generated ? `; password: ${password}` : ''}\n`
    },
  },
  'account disable': simple(1, (s, a) => admin.setAccountEnabled(s, a, false), (a) => `account ${a} disabled`),
  'account enable': simple(1, (s, a) => admin.setAccountEnabled(s, a, true), (a) => `account ${a} enabled`),
  'account rm': simple(1, admin.removeAccount, (a) => `account ${a} removed, with its grants, rules and assignments`),
  assign: simple(2, admin.assign, (g, a) => `account ${a} assigned to gateway ${g}`),
  unassign: simple(2, admin.unassign, (g, a) => `account ${a} unassigned from gateway ${g}`),
  'grant add': {
    arity: [3, 3],
    options: RIGHTS_OPTIONS,
    async run(ctx) {
      const rights = rightsOf(ctx.values, false)
      if (!rights.publish && !rights.subscribe) throw new UsageError('give --publish, --subscribe or both')
      if (at(ctx, 0) === at(ctx, 1)) throw new CliFailure(`"${at(ctx, 0)}" already has every right in its own namespace`)
      const { owner, grantee, filter } = grantFilter(ctx)
      const now = await sql(ctx, (s) => admin.addGrant(s, owner, grantee, filter, rights))
      return `grant of ${filter} from ${owner} to ${grantee}: ${rightsText(now)}\n`
    },
  },
  'grant rm': {
    arity: [3, 3],
    options: RIGHTS_OPTIONS,
    async run(ctx) {
      const { owner, grantee, filter } = grantFilter(ctx)
      const left = await sql(ctx, (s) => admin.removeGrant(s, owner, grantee, filter, rightsOf(ctx.values, true)))
      return `grant of ${filter} from ${owner} to ${grantee}: ${left === undefined ? 'removed' : `now ${rightsText(left)}`}\n`
    },
  },
  'grant list': listing(
    1,
    {},
    (ctx) => (s) => admin.listGrants(s, ctx.positionals[0]),
    ['OWNER', 'GRANTEE', 'FILTER', 'RIGHTS'],
    (g) => [g.owner, g.grantee, g.filter, rightsText(g)],
  ),
  'rule push': {
    arity: [3, 3],
    options: { manifest: { type: 'string' } },
    async run(ctx) {
      const [account, name, file] = [at(ctx, 0), at(ctx, 1), at(ctx, 2)]
      const problem = accountIdProblem(account)
      if (problem !== null) throw new CliFailure(`cannot push to "${account}": ${problem}`)
      const reserved = reservedRuleName(name)
      if (reserved !== undefined) throw new CliFailure(reserved)
      const source = readText(file, 'rule')
      const manifest = manifestFor(file, str(ctx.values, 'manifest'), name, account)
      checkTriggers(account, manifest, undefined)
      // Compiled with an empty KV: each gateway loads it again with the account's own.
      await compile(account, name, file, source, manifest, {})
      const version = await sql(ctx, (s) => pushRule(s, account, name, source, manifestJson(manifest)))
      return `rule ${account}/${name} version ${version} stored\n`
    },
  },
  'rule list': listing(
    1,
    {},
    (ctx) => (s) => listRules(s, ctx.positionals[0]),
    ['ACCOUNT', 'NAME', 'VERSION', 'ENABLED', 'BYTES', 'UPDATED'],
    (r) => [r.account, r.name, String(r.version), yesNo(r.enabled), String(r.bytes), r.updated],
  ),
  'rule rm': simple(2, removeRule, (a, n) => `rule ${a}/${n} removed`),
  'rule disable': simple(2, (s, a, n) => setRuleEnabled(s, a, n, false), (a, n, v) => `rule ${a}/${n} disabled (version ${v})`),
  'rule enable': simple(2, (s, a, n) => setRuleEnabled(s, a, n, true), (a, n, v) => `rule ${a}/${n} enabled (version ${v})`),
  'epoch reset': simple(0, resetEpoch, (_a, _b, r) => `epoch ${r.before} -> ${r.after}: every gateway loads everything again`),
  prune: {
    arity: [0, 0],
    options: { keep: { type: 'string' } },
    async run(ctx) {
      const keep = str(ctx.values, 'keep')
      if (keep === undefined || !/^[0-9]{1,15}$/.test(keep)) throw new UsageError('--keep N: how many of the newest change-log positions to keep')
      const r = await sql(ctx, (s) => prune(s, Number(keep)))
      return `removed ${plural(r.removed, 'change-log row')}; pruned up to ${r.prunedUpto}\n`
    },
  },
}

/** `gateway`, `account`, ...: the first word of two-word commands. */
const GROUPS = new Set(Object.keys(COMMANDS).flatMap((k) => (k.includes(' ') ? [k.slice(0, k.indexOf(' '))] : [])))
const isHelp = (arg: string | undefined): boolean => arg === '-h' || arg === '--help' || arg === 'help'

export async function centralCommand(args: readonly string[], io: Io): Promise<number> {
  const [first, second] = args
  const grouped = first !== undefined && GROUPS.has(first)
  if (isHelp(first) || (grouped && isHelp(second))) {
    io.out(CENTRAL_HELP)
    return 0
  }
  if (first === undefined || (grouped && second === undefined)) {
    io.err(CENTRAL_HELP)
    return 2
  }
  const key = grouped ? `${first} ${second ?? ''}` : first
  const command = Object.hasOwn(COMMANDS, key) ? COMMANDS[key] : undefined
  if (command === undefined) {
    io.err(`perch central: unknown command "${key}"\n\n${CENTRAL_HELP}`)
    return 2
  }
  const prefix = `perch central ${key}`
  let parsed: { positionals: string[]; values: Values }
  try {
    const options: Options = { mysql: { type: 'string' }, help: { type: 'boolean', short: 'h' }, ...command.options }
    parsed = parseArgs({ args: args.slice(grouped ? 2 : 1), options, strict: true, allowPositionals: true })
  } catch (e) {
    io.err(`${prefix}: ${describeError(e)}\n\n${CENTRAL_HELP}`)
    return 2
  }
  const { positionals, values } = parsed
  if (flag(values, 'help')) {
    io.out(CENTRAL_HELP)
    return 0
  }
  const [min, max] = command.arity
  if (positionals.length < min || positionals.length > max) {
    io.err(`${prefix}: expected ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${positionals.length}\n\n${CENTRAL_HELP}`)
    return 2
  }
  const url = str(values, 'mysql') ?? io.env.PERCH_CENTRAL_URL ?? ''
  if (url === '') {
    io.err(`${prefix}: give --mysql mysql://user:password@host:port/database or set PERCH_CENTRAL_URL\n`)
    return 2
  }
  const target = parseMysqlUrl(url, { connectTimeoutMs: SYNC_DEFAULTS.connectTimeout * 1000, queryTimeoutMs: QUERY_TIMEOUT_MS })
  if (!target.ok) {
    io.err(`perch central: ${oneLine(redact(target.error.message))}\n`)
    return 1
  }
  // Whatever a message quotes, the admin's password is not shown (server messages never should).
  const secret = target.value.password
  const hide = (text: string): string => oneLine(secret.length >= 3 ? text.replaceAll(secret, '***') : text)
  let session: MysqlSession | undefined
  const ctx: Ctx = {
    positionals,
    values,
    target: target.value,
    async db() {
      session ??= await openAdmin(target.value)
      return session
    },
    note: (text) => io.err(text),
  }
  try {
    io.out(await command.run(ctx))
    return 0
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${prefix}: ${hide(e.message)}\n\n${CENTRAL_HELP}`)
      return 2
    }
    if (e instanceof CliFailure) {
      io.err(`perch central: ${hide(e.message)}\n`)
      return 1
    }
    throw e
  } finally {
    await session?.close()
  }
}

/** Opens the admin connection, strict about values the schema cannot hold (refused, never truncated). */
async function openAdmin(target: MysqlTarget): Promise<MysqlSession> {
  const session = must(await MysqlSession.open(target))
  const strict = await session.execute("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')")
  if (!strict.ok) session.destroy()
  must(strict)
  return session
}

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, ' ')
