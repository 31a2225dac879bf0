import { accountIdProblem } from '../auth/account-id.js'
import { hashPassword, randomPassword } from '../auth/password.js'
import { CliFailure, check, type Family, flag, runFamily, STORE_OPTIONS, str, table, type Values, yesNo } from './account-cli-common.js'
import { GRANT } from './account-cli-grant.js'
import type { Io } from './cli.js'

const ACCOUNT_HELP = `Usage: perch account <command> [options]

Commands:
  add NAME [--password P] [--admin]  create an account; without --password a
                                     random password is generated and printed
  list [--json]                      list accounts: id, admin, enabled, created
  passwd NAME [--password P]         set a new password (random and printed
                                     when --password is not given)
  disable NAME                       refuse its logins, disconnect its clients
  enable NAME                        allow its logins again
  rm NAME                            remove it with its grants and handler roles

${STORE_OPTIONS}`

/** The password to set and whether perch made it up (then it is printed, once). */
function chosenPassword(values: Values): { password: string; generated: boolean } {
  const given = str(values, 'password')
  if (given === '') throw new CliFailure('a password may not be empty')
  return given === undefined ? { password: randomPassword(), generated: true } : { password: given, generated: false }
}

function existing(positionals: readonly string[]): string {
  return positionals[0] ?? ''
}

const ACCOUNT: Family = {
  name: 'account',
  help: ACCOUNT_HELP,
  subcommands: {
    add: {
      arity: [1, 1],
      options: { password: { type: 'string' }, admin: { type: 'boolean' } },
      async run({ positionals, values, store }) {
        const id = existing(positionals)
        const problem = accountIdProblem(id)
        if (problem !== null) throw new CliFailure(`cannot add "${id}": ${problem}`)
        const { password, generated } = chosenPassword(values)
        const admin = flag(values, 'admin')
        // Checked before hashing so a taken name fails at once; addAccount checks again.
        if (store().account(id) !== undefined) throw new CliFailure(`account "${id}" exists`)
        check(store().addAccount(id, await hashPassword(password), admin))
        return `${admin ? 'admin account' : 'account'} ${id} added${generated ? `; password: ${password}` : ''}\n`
      },
    },
    list: {
      arity: [0, 0],
      options: { json: { type: 'boolean' } },
      run({ values, store }) {
        const accounts = store()
          .snapshot()
          .accounts.map((a) => ({ id: a.id, admin: a.admin, enabled: a.enabled, created: new Date(a.createdAt).toISOString() }))
        if (flag(values, 'json')) return `${JSON.stringify(accounts, null, 2)}\n`
        return table(
          ['ID', 'ADMIN', 'ENABLED', 'CREATED'],
          accounts.map((a) => [a.id, yesNo(a.admin), yesNo(a.enabled), a.created]),
        )
      },
    },
    passwd: {
      arity: [1, 1],
      options: { password: { type: 'string' } },
      async run({ positionals, values, store }) {
        const id = existing(positionals)
        const { password, generated } = chosenPassword(values)
        if (store().account(id) === undefined) throw new CliFailure(`no account "${id}"`)
        check(store().setVerifier(id, await hashPassword(password)))
        return `password of ${id} changed${generated ? `; password: ${password}` : ''}\n`
      },
    },
    disable: {
      arity: [1, 1],
      options: {},
      run: ({ positionals, store }) => {
        const id = existing(positionals)
        check(store().setEnabled(id, false))
        return `account ${id} disabled\n`
      },
    },
    enable: {
      arity: [1, 1],
      options: {},
      run: ({ positionals, store }) => {
        const id = existing(positionals)
        check(store().setEnabled(id, true))
        return `account ${id} enabled\n`
      },
    },
    rm: {
      arity: [1, 1],
      options: {},
      run: ({ positionals, store }) => {
        const id = existing(positionals)
        check(store().removeAccount(id))
        return `account ${id} removed, with its grants and handler roles\n`
      },
    },
  },
}

export function accountCommand(args: readonly string[], io: Io): Promise<number> {
  return runFamily(ACCOUNT, args, io)
}

export function grantCommand(args: readonly string[], io: Io): Promise<number> {
  return runFamily(GRANT, args, io)
}
