// `perch rule ...`: account rules in rules.db, pushed, listed, removed, tried out and read back
// from the command line. A running perch polls rules.db and applies the changes itself.
import { accountIdProblem } from '../auth/account-id.js'
import { systemClock } from '../core/clock.js'
import { reservedRuleName } from '../scripting/engine/control.js'
import { manifestJson } from '../scripting/engine/manifest.js'
import { RuleStore } from '../scripting/engine/rule-store.js'
import { CliFailure, type Context, DIR_OPTIONS, type Family, flag, runFamily, str, table, UsageError } from './account-cli-common.js'
import type { Io } from './cli.js'
import { accountsOf, checkTriggers, compile, manifestFor, readText, runOnce, runTopic } from './rule-cli-sandbox.js'

const RULE_HELP = `Usage: perch rule <command> [options]

A rule is an ES module (export function onMessage(msg), onTimer(t), onEvent(e))
run in a sandbox for one account, plus a JSON manifest: triggers and limits.

Commands:
  push ACCOUNT NAME FILE [--manifest M]   compile FILE and store it as rule NAME of
                                          ACCOUNT (a new version); the manifest is M,
                                          else FILE with .js replaced by .json if
                                          that exists, else none (the rule then runs
                                          only through /ACCOUNT/run/NAME). A syntax
                                          error is reported with its line and column
                                          and nothing is stored
  list [ACCOUNT] [--json]                 stored rules: account, name, version,
                                          origin, updated
  rm ACCOUNT NAME                         remove a rule with its log lines
  run ACCOUNT NAME [PAYLOAD] [--topic T]  run the stored rule once, here and offline,
                                          on a message on T (default
                                          /ACCOUNT/run/NAME; relative to /ACCOUNT/)
                                          with PAYLOAD (default empty) and the
                                          account's KV; print its effects (publishes,
                                          kv writes, logs) and return value as JSON.
                                          Nothing is published or stored, and the ACL
                                          is not applied. Exit 1 when the call fails
  logs ACCOUNT NAME [--lines N]           the rule's last N log lines (default 50)

push needs ACCOUNT in accounts.db, and trigger topics that ACCOUNT may read (its
own /ACCOUNT/ and what it is granted); a data directory without accounts.db
(perch in open or static mode) takes any account id and any well-formed trigger.

${DIR_OPTIONS}
A running perch picks up pushed and removed rules within about a second
(rules.reloadInterval). A new version replaces the running one only if it loads.
`

const DEFAULT_LOG_LINES = 50

/** Opens rules.db in the data directory for `fn` and closes it after. */
async function withRules<T>(ctx: Context, fn: (rules: RuleStore) => T | Promise<T>): Promise<T> {
  const opened = RuleStore.open(ctx.dataDir(), systemClock())
  if (!opened.ok) throw opened.error
  try {
    return await fn(opened.value)
  } finally {
    opened.value.dispose()
  }
}

const noRule = (account: string, name: string): CliFailure => new CliFailure(`no rule "${name}" of account "${account}"`)

/** Control characters (a line break, a terminal escape) of a guest's log line, made visible. */
function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

const RULE: Family = {
  name: 'rule',
  help: RULE_HELP,
  subcommands: {
    push: {
      arity: [3, 3],
      options: { manifest: { type: 'string' } },
      async run(ctx) {
        const [account = '', name = '', file = ''] = ctx.positionals
        const problem = accountIdProblem(account)
        if (problem !== null) throw new CliFailure(`cannot push to "${account}": ${problem}`)
        const reserved = reservedRuleName(name)
        if (reserved !== undefined) throw new CliFailure(reserved)
        const source = readText(file, 'rule')
        const manifest = manifestFor(file, str(ctx.values, 'manifest'), name, account)
        const accounts = accountsOf(ctx.dataDir(), ctx.store)
        if (accounts !== undefined && accounts.account(account) === undefined) throw new CliFailure(`no account "${account}"`)
        checkTriggers(account, manifest, accounts)
        return withRules(ctx, async (rules) => {
          await compile(account, name, file, source, manifest, rules.kv(account))
          const stored = rules.put(account, name, source, manifestJson(manifest), 'cli')
          return `rule ${account}/${name} version ${stored.version} stored\n`
        })
      },
    },
    list: {
      arity: [0, 1],
      options: { json: { type: 'boolean' } },
      run: (ctx) =>
        withRules(ctx, (rules) => {
          const listed = rules
            .rules(ctx.positionals[0])
            .map((r) => ({ account: r.account, name: r.name, version: r.version, origin: r.origin, updated: new Date(r.updatedAt).toISOString() }))
          if (flag(ctx.values, 'json')) return `${JSON.stringify(listed, null, 2)}\n`
          return table(
            ['ACCOUNT', 'NAME', 'VERSION', 'ORIGIN', 'UPDATED'],
            listed.map((r) => [r.account, r.name, String(r.version), r.origin, r.updated]),
          )
        }),
    },
    rm: {
      arity: [2, 2],
      options: {},
      run: (ctx) =>
        withRules(ctx, (rules) => {
          const [account = '', name = ''] = ctx.positionals
          if (!rules.remove(account, name)) throw noRule(account, name)
          return `rule ${account}/${name} removed\n`
        }),
    },
    run: {
      arity: [2, 3],
      options: { topic: { type: 'string' } },
      run: (ctx) =>
        withRules(ctx, async (rules) => {
          const [account = '', name = '', payload = ''] = ctx.positionals
          const rule = rules.rule(account, name)
          if (rule === undefined) throw noRule(account, name)
          const topic = runTopic(account, name, str(ctx.values, 'topic'))
          const report = await runOnce(rule, topic, payload, rules.kv(account))
          return `${JSON.stringify(report, null, 2)}\n`
        }),
    },
    logs: {
      arity: [2, 2],
      options: { lines: { type: 'string' } },
      run(ctx) {
        const given = str(ctx.values, 'lines')
        if (given !== undefined && !/^[1-9][0-9]{0,8}$/.test(given)) throw new UsageError(`--lines: "${given}" is not a positive whole number`)
        const lines = given === undefined ? DEFAULT_LOG_LINES : Number(given)
        return withRules(ctx, (rules) => {
          const [account = '', name = ''] = ctx.positionals
          const logs = rules.logs(account, name, lines)
          if (logs.length === 0 && rules.rule(account, name) === undefined) throw noRule(account, name)
          return logs.map((l) => `${new Date(l.at).toISOString()}  ${l.level.padEnd(5)}  ${printable(l.message)}\n`).join('')
        })
      },
    },
  },
}

export function ruleCommand(args: readonly string[], io: Io): Promise<number> {
  return runFamily(RULE, args, io)
}
