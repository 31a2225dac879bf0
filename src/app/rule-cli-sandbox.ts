// The parts of `perch rule` that run guest code: compiling a rule before it is stored, and
// running a stored rule once, offline, in a short-lived sandbox of this process.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ACCOUNTS_FILE, type AccountStore } from '../auth/account-store.js'
import { Acl } from '../auth/acl.js'
import { describeError } from '../core/errors.js'
import { validTopicFilter, validTopicName } from '../mqtt/topic/validate.js'
import { absoluteFilter, parseManifest, type RuleManifest } from '../scripting/engine/manifest.js'
import type { StoredRule } from '../scripting/engine/rule-store.js'
import { SandboxHost } from '../scripting/host.js'
import { DEFAULT_MAX_PUBLISHES, DEFAULT_TIME_MS } from '../scripting/limits.js'
import type { Effect, RuleSpec } from '../scripting/types.js'
import { CliFailure } from './account-cli-common.js'

/** As wide as MQTT allows, like grants: the broker's own limits may change. */
const MAX_TOPIC_BYTES = 65_535
const MAX_TOPIC_LEVELS = 1024

/** The manifest for FILE: `--manifest`, else FILE.json next to FILE.js if it exists, else none. */
export function manifestFor(file: string, given: string | undefined, name: string, account: string): RuleManifest {
  const implicit = file.endsWith('.js') ? `${file.slice(0, -3)}.json` : undefined
  const path = given ?? (implicit !== undefined && existsSync(implicit) ? implicit : undefined)
  let input: unknown
  if (path !== undefined) {
    const text = readText(path, 'manifest')
    try {
      input = JSON.parse(text)
    } catch (e) {
      throw new CliFailure(`${path}: the manifest is not JSON: ${describeError(e)}`)
    }
  }
  const parsed = parseManifest(input, name, account)
  if (!parsed.ok) throw new CliFailure(path === undefined ? parsed.error : `${path}: ${parsed.error}`)
  return parsed.value
}

export function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new CliFailure(`cannot read ${what} ${path}: ${describeError(e)}`)
  }
}

/** The accounts store of `dataDir`, or undefined when it has none (open or static mode). */
export function accountsOf(dataDir: string, store: () => AccountStore): AccountStore | undefined {
  return existsSync(join(dataDir, ACCOUNTS_FILE)) ? store() : undefined
}

/**
 * Refuses trigger filters perch would refuse when it loads the rule: malformed ones, and with
 * accounts, ones outside what the account may read (its namespace and the grants it holds now).
 */
export function checkTriggers(account: string, m: RuleManifest, accounts: AccountStore | undefined): void {
  const filters = m.topics.map((f) => absoluteFilter(account, f))
  for (const f of filters) {
    const invalid = validTopicFilter(f, MAX_TOPIC_BYTES, MAX_TOPIC_LEVELS)
    if (invalid !== null) throw new CliFailure(`trigger "${f}": ${invalid}`)
  }
  if (accounts === undefined) return
  const acl = new Acl(accounts.snapshot())
  const outside = filters.filter((f) => acl.subscribeDecision({ account, admin: false }, f) === 'deny')
  if (outside.length > 0) throw new CliFailure(`triggers outside the account's read rights: ${outside.join(', ')}`)
}

/** The sandbox limits of a manifest, defaults filled in as the engine does. */
function specOf(account: string, name: string, source: string, m: RuleManifest): RuleSpec {
  const limits: RuleSpec['limits'] = { timeMs: m.limits.timeMs ?? DEFAULT_TIME_MS, maxPublishes: m.limits.maxPublishes ?? DEFAULT_MAX_PUBLISHES }
  if (m.limits.memoryMb !== undefined) limits.memoryMb = m.limits.memoryMb
  return { account, name, source, limits }
}

async function withSandbox<T>(kv: Readonly<Record<string, string>>, fn: (host: SandboxHost) => Promise<T>): Promise<T> {
  let host: SandboxHost
  try {
    host = await SandboxHost.start({ now: () => Date.now(), kvSnapshot: () => kv })
  } catch (e) {
    throw new CliFailure(`cannot start the rule sandbox: ${describeError(e)}`)
  }
  try {
    return await fn(host)
  } finally {
    await host.dispose()
  }
}

/** Loads the rule into a sandbox as perch would; `what` names it in the failure (a file, a stored rule). */
async function load(host: SandboxHost, spec: RuleSpec, what: string, after: string): Promise<void> {
  const loaded = await host.load(spec)
  if (loaded.ok) return
  const e = loaded.error
  const where = e.line === undefined ? '' : `:${e.line}:${e.column ?? 0}`
  throw new CliFailure(`${what}${where}: ${e.message}${after}`)
}

/** Compiles and checks the rule (its top-level code runs with the account's KV); throws why not. */
export function compile(account: string, name: string, file: string, source: string, m: RuleManifest, kv: Readonly<Record<string, string>>): Promise<void> {
  return withSandbox(kv, (host) => load(host, specOf(account, name, source, m), file, `; rule ${account}/${name} not stored`))
}

export interface RunReport {
  publishes: { topic: string; payload: string; qos: number; retain: boolean }[]
  kv: ({ key: string; value: string } | { key: string; deleted: true })[]
  logs: { level: string; message: string }[]
  /** What the handler returned (parsed); absent when it returned nothing. */
  returned?: unknown
}

/** The topic of a `rule run` message: relative ones lie under /ACCOUNT/. */
export function runTopic(account: string, name: string, given: string | undefined): string {
  const topic = given === undefined ? `/${account}/run/${name}` : absoluteFilter(account, given)
  const invalid = validTopicName(topic, MAX_TOPIC_BYTES, MAX_TOPIC_LEVELS)
  if (invalid !== null) throw new CliFailure(`--topic "${topic}": ${invalid}`)
  return topic
}

/** Runs a stored rule once on one message; nothing leaves this process. */
export function runOnce(rule: StoredRule, topic: string, payload: string, kv: Readonly<Record<string, string>>): Promise<RunReport> {
  const { account, name } = rule
  let manifest: unknown
  try {
    manifest = JSON.parse(rule.manifest)
  } catch {
    manifest = undefined
  }
  const m = parseManifest(manifest, name, account)
  if (!m.ok) throw new CliFailure(`rule ${account}/${name}: stored ${m.error}`)
  return withSandbox(kv, async (host) => {
    await load(host, specOf(account, name, rule.source, m.value), `rule ${account}/${name} version ${rule.version}`, '')
    const result = await host.invoke(account, name, [{ kind: 'message', topic, payload }])
    if (!result.ok) throw new CliFailure(`rule ${account}/${name} failed: ${result.error.code}: ${result.error.message}`)
    return report(account, result.effects, result.returned)
  })
}

function report(account: string, effects: readonly Effect[], returned: string | undefined): RunReport {
  const out: RunReport = { publishes: [], kv: [], logs: [] }
  for (const e of effects) {
    if (e.kind === 'publish') out.publishes.push({ topic: absoluteFilter(account, e.topic), payload: e.payload, qos: e.qos, retain: e.retain })
    else if (e.kind === 'kv.set') out.kv.push({ key: e.key, value: e.value })
    else if (e.kind === 'kv.delete') out.kv.push({ key: e.key, deleted: true })
    else out.logs.push({ level: e.level, message: e.message })
  }
  if (returned !== undefined) {
    try {
      out.returned = JSON.parse(returned)
    } catch {
      out.returned = returned
    }
  }
  return out
}
