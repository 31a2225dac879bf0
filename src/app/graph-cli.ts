// `perch graph list|show`: the graphs that link registered devices' features (the IoTtalk
// model), read from <dataDir>/features.db while perch runs or at rest.
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { describeError } from '../core/errors.js'
import type { DeviceRecord } from '../features/model.js'
import type { FeatureStore, FunctionRecord, GraphRecord, LinkRecord } from '../features/store.js'
import { table } from './account-cli-common.js'
import type { Io } from './cli.js'
import { subcommand } from './cli-subcommand.js'
import { cliConfig, featuresPath, iso, shortDigest, withFeatures } from './devices-cli-registered.js'

export const GRAPH_HELP = `Usage: perch graph list [--account A] [--json] [options]
       perch graph show ACCOUNT/GRAPH [--json] [options]

The graphs that link the features of registered devices, read from
<dataDir>/features.db (perch keeps it current while it runs).

list   one line per graph: account, name, number of input (idf) and output
       (odf) links, join function (short digest, "-" for none) and whether
       every device in it is online.
show   one graph: its links in order (device id and name, kind, feature,
       function, the device's presence), its join function and the functions
       of its account (digest, first line of code, added at). Exits 1 for an
       unknown graph.

Options:
  --config FILE    JSON config file (its dataDir)
  --data-dir DIR   state directory (default: dataDir of --config, else
                   $STATE_DIRECTORY, $PERCH_DATA_DIR or ./perch-data)
  --account A      list: only the graphs of account A
  --json           print JSON (with digests in full)
  -h, --help       show this help
`

export async function graphCommand(args: readonly string[], io: Io): Promise<number> {
  const opened = subcommand('graph', GRAPH_HELP, ['list', 'show'] as const, args, io, parse)
  if (typeof opened === 'number') return opened
  const { sub, parsed } = opened
  const { values, positionals } = parsed
  const usage = sub === 'list' ? listUsage(positionals) : showUsage(positionals, values.account)
  if (typeof usage === 'string') {
    io.err(`perch graph ${sub}: ${usage}\n\n${GRAPH_HELP}`)
    return 2
  }
  let dataDir: string
  try {
    dataDir = cliConfig(values, io.env).dataDir
  } catch (e) {
    io.err(`perch graph: ${describeError(e)}\n`)
    return 1
  }
  const json = values.json === true
  return usage === undefined ? list(dataDir, values.account, json, io) : show(dataDir, usage, json, io)
}

function parse(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      account: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
}

function listUsage(positionals: readonly string[]): string | undefined {
  return positionals.length > 0 ? 'takes no arguments' : undefined
}

interface GraphName {
  readonly account: string
  readonly graph: string
}

/** The graph named by `show`'s one argument, or what is wrong with the command line. */
function showUsage(positionals: readonly string[], account: string | undefined): GraphName | string {
  if (account !== undefined) return '--account applies to list only (show names the account: ACCOUNT/GRAPH)'
  const [name] = positionals
  if (name === undefined || positionals.length > 1) return `expected one ACCOUNT/GRAPH, got ${positionals.length} arguments`
  // Account names never hold '/': the graph's name is everything after the first one.
  const slash = name.indexOf('/')
  if (slash <= 0 || slash === name.length - 1) return `"${name}" is not ACCOUNT/GRAPH (such as farm/irrigation)`
  return { account: name.slice(0, slash), graph: name.slice(slash + 1) }
}

/** Looks devices up once each. */
function deviceLookup(store: FeatureStore): (id: string) => DeviceRecord | undefined {
  const seen = new Map<string, DeviceRecord | undefined>()
  return (id) => {
    if (!seen.has(id)) seen.set(id, store.device(id))
    return seen.get(id)
  }
}

interface GraphSummary {
  readonly graph: GraphRecord
  readonly idf: number
  readonly odf: number
  readonly devices: number
  readonly online: number
}

function summarize(store: FeatureStore, account: string | undefined): GraphSummary[] {
  const device = deviceLookup(store)
  const links = store.links(account)
  return store.graphs(account).map((graph) => {
    const own = links.filter((l) => l.account === graph.account && l.graph === graph.name)
    const ids = [...new Set(own.map((l) => l.device))]
    return {
      graph,
      idf: own.filter((l) => l.kind === 'idf').length,
      odf: own.filter((l) => l.kind === 'odf').length,
      devices: ids.length,
      online: ids.filter((id) => device(id)?.presence === 'online').length,
    }
  })
}

const allOnline = (s: GraphSummary): string => (s.devices === 0 ? '-' : s.online === s.devices ? 'yes' : `no (${s.online}/${s.devices})`)

function list(dataDir: string, account: string | undefined, json: boolean, io: Io): number {
  const read = withFeatures(dataDir, (store) => (store === undefined ? undefined : summarize(store, account)))
  if (!read.ok) {
    io.err(`perch graph list: ${read.error.message}\n`)
    return 1
  }
  const graphs = read.value ?? []
  if (json) {
    const out = graphs.map((s) => ({
      account: s.graph.account,
      name: s.graph.name,
      idf_links: s.idf,
      odf_links: s.odf,
      join: s.graph.join,
      devices: s.devices,
      online: s.online,
      // null: no device links into the graph yet.
      all_online: s.devices === 0 ? null : s.online === s.devices,
      created_at: iso(s.graph.createdAt),
    }))
    io.out(`${JSON.stringify({ graphs: out }, null, 2)}\n`)
    return 0
  }
  if (read.value === undefined) io.out(`no graphs: no devices are registered (no ${featuresPath(dataDir)})\n`)
  else if (graphs.length === 0) io.out(`no graphs${account === undefined ? '' : ` of account ${account}`}\n`)
  else {
    const rows = graphs.map((s) => [s.graph.account, s.graph.name, String(s.idf), String(s.odf), shortDigest(s.graph.join), allOnline(s)])
    io.out(table(['ACCOUNT', 'GRAPH', 'IDF', 'ODF', 'JOIN', 'ALL ONLINE'], rows))
  }
  return 0
}

interface GraphDetail {
  readonly graph: GraphRecord
  readonly links: readonly { readonly link: LinkRecord; readonly device: DeviceRecord | undefined }[]
  readonly functions: readonly FunctionRecord[]
}

function show(dataDir: string, name: GraphName, json: boolean, io: Io): number {
  const read = withFeatures(dataDir, (store): GraphDetail | undefined => {
    const graph = store?.graph(name.account, name.graph)
    if (store === undefined || graph === undefined) return undefined
    const device = deviceLookup(store)
    const links = store.links(name.account, name.graph).map((link) => ({ link, device: device(link.device) }))
    return { graph, links, functions: store.functions(name.account) }
  })
  if (!read.ok) {
    io.err(`perch graph show: ${read.error.message}\n`)
    return 1
  }
  const detail = read.value
  if (detail === undefined) {
    const path = featuresPath(dataDir)
    io.err(`perch graph show: no graph ${name.account}/${name.graph}${existsSync(path) ? '' : ` (no devices are registered: no ${path})`}\n`)
    return 1
  }
  io.out(json ? `${JSON.stringify(graphJson(detail), null, 2)}\n` : graphText(detail))
  return 0
}

const firstLine = (code: string): string => code.trim().split('\n', 1)[0] ?? ''

function graphJson(d: GraphDetail): Record<string, unknown> {
  return {
    account: d.graph.account,
    name: d.graph.name,
    join: d.graph.join,
    created_at: iso(d.graph.createdAt),
    links: d.links.map(({ link, device }) => ({
      device: link.device,
      device_name: device?.name ?? null,
      kind: link.kind,
      feature: link.feature,
      func: link.func,
      presence: device?.presence ?? null,
    })),
    functions: d.functions.map((f) => ({ digest: f.digest, code: f.code, added_at: iso(f.addedAt) })),
  }
}

function graphText(d: GraphDetail): string {
  const join = d.graph.join === null ? undefined : d.functions.find((f) => f.digest === d.graph.join)
  let out = `graph    ${d.graph.account}/${d.graph.name}\ncreated  ${iso(d.graph.createdAt)}\n`
  out += `join     ${shortDigest(d.graph.join)}${join === undefined ? '' : `  ${firstLine(join.code)}`}\n`
  const rows = d.links.map(({ link, device }) => [
    link.device,
    device?.name ?? '?',
    link.kind,
    link.feature,
    shortDigest(link.func),
    device?.presence ?? 'not registered',
  ])
  out += rows.length === 0 ? '\nlinks: none\n' : `\nlinks:\n${table(['DEVICE', 'NAME', 'KIND', 'FEATURE', 'FUNCTION', 'PRESENCE'], rows)}`
  const functions = d.functions.map((f) => [shortDigest(f.digest), iso(f.addedAt), firstLine(f.code)])
  out +=
    functions.length === 0
      ? `\nfunctions of ${d.graph.account}: none\n`
      : `\nfunctions of ${d.graph.account}:\n${table(['DIGEST', 'ADDED', 'FIRST LINE'], functions)}`
  return out
}
