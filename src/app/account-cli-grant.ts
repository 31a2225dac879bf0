import type { GrantRow } from '../auth/account-store.js'
import { validTopicFilter } from '../mqtt/topic/validate.js'
import { CliFailure, check, type Family, flag, STORE_OPTIONS, table, UsageError } from './account-cli-common.js'

const GRANT_HELP = `Usage: perch grant <command> [options]

A grant lets GRANTEE subscribe to (--sub) and/or publish on (--pub) topics in
OWNER's namespace /OWNER/. FILTER is relative to it (mytopic, sensors/#) or
absolute (/OWNER/mytopic) and may hold the wildcards + and #.

Commands:
  add OWNER GRANTEE FILTER --sub|--pub     grant one or both rights
  rm OWNER GRANTEE FILTER [--sub] [--pub]  take rights away (both when no flag)
  list [ACCOUNT] [--json]                  grants given or received by ACCOUNT
                                           (all grants when omitted)

${STORE_OPTIONS}`

/** Limits as wide as MQTT allows: the broker's own limits may change, a stored grant should not break. */
const MAX_FILTER_BYTES = 65_535
const MAX_FILTER_LEVELS = 1024

/** The absolute filter a grant of `name` by `owner` covers; only the owner's own namespace can be granted. */
export function ownFilter(owner: string, name: string): string {
  if (name === '') throw new CliFailure('the topic filter may not be empty')
  if (name.startsWith('$share/')) throw new CliFailure(`"${name}": a grant covers topics, not a shared subscription ($share/...)`)
  const filter = name.startsWith('/') ? name : `/${owner}/${name}`
  if (!filter.startsWith(`/${owner}/`)) throw new CliFailure(`"${name}" is outside /${owner}/: an account grants only its own topics`)
  const invalid = validTopicFilter(filter, MAX_FILTER_BYTES, MAX_FILTER_LEVELS)
  if (invalid !== null) throw new CliFailure(`"${name}": ${invalid}`)
  return filter
}

function rightsOf(g: GrantRow): string {
  return [g.subscribe ? 'sub' : '', g.publish ? 'pub' : ''].filter((r) => r !== '').join(',')
}

export const GRANT: Family = {
  name: 'grant',
  help: GRANT_HELP,
  subcommands: {
    add: {
      arity: [3, 3],
      options: { sub: { type: 'boolean' }, pub: { type: 'boolean' } },
      run({ positionals, values, store }) {
        const [owner = '', grantee = '', name = ''] = positionals
        const rights = { subscribe: flag(values, 'sub'), publish: flag(values, 'pub') }
        if (!rights.subscribe && !rights.publish) throw new UsageError('give --sub, --pub or both')
        if (owner === grantee) throw new CliFailure(`"${owner}" already has every right in its own namespace`)
        const filter = ownFilter(owner, name)
        for (const id of [owner, grantee]) if (store().account(id) === undefined) throw new CliFailure(`no account "${id}"`)
        const g = check(store().addGrant(owner, grantee, filter, rights))
        return `grant of ${filter} from ${owner} to ${grantee}: ${rightsOf(g)}\n`
      },
    },
    rm: {
      arity: [3, 3],
      options: { sub: { type: 'boolean' }, pub: { type: 'boolean' } },
      run({ positionals, values, store }) {
        const [owner = '', grantee = '', name = ''] = positionals
        const some = flag(values, 'sub') || flag(values, 'pub')
        const rights = some ? { subscribe: flag(values, 'sub'), publish: flag(values, 'pub') } : { subscribe: true, publish: true }
        const filter = ownFilter(owner, name)
        const left = check(store().removeGrant(owner, grantee, filter, rights))
        return `grant of ${filter} from ${owner} to ${grantee}: ${left === undefined ? 'removed' : `now ${rightsOf(left)}`}\n`
      },
    },
    list: {
      arity: [0, 1],
      options: { json: { type: 'boolean' } },
      run({ positionals, values, store }) {
        const [who] = positionals
        if (who !== undefined && store().account(who) === undefined) throw new CliFailure(`no account "${who}"`)
        const grants = store()
          .snapshot()
          .grants.filter((g) => who === undefined || g.owner === who || g.grantee === who)
        if (flag(values, 'json')) return `${JSON.stringify(grants, null, 2)}\n`
        return table(
          ['OWNER', 'GRANTEE', 'FILTER', 'RIGHTS'],
          grants.map((g) => [g.owner, g.grantee, g.filter, rightsOf(g)]),
        )
      },
    },
  },
}
