// The bundled rules in rules/: every NAME.js is loaded with the limits of its NAME.json into a
// real SandboxHost (real QuickJS in its worker) and every case of its NAME.cases.json is run
// through it: the publishes (in order), the returned value, the log levels and the KV store
// after the case must be what the case expects.
//
// A case: { name, kv?, now?, inputs, expect: { publishes?, returned?, kv?, logs? } }
// - inputs: { topic, payload } (a message), { timer: true } or { event: {...} }; any input may
//   carry its own "now". Each input is one invocation, so each sees its own now().
// - expect.publishes: [{ topic, payload, qos?, retain? }] over all inputs, in order; [] when absent.
// - expect.returned: the last input's return value as JSON; null when it returned nothing.
// - expect.kv: the whole store after the case (the case's kv with the rule's kv.set/delete applied).
// - expect.logs: the levels of the log lines over all inputs, in order.
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { matchesFilter } from '../../src/mqtt/topic/index.js'
import { absoluteFilter, parseManifest, type RuleManifest } from '../../src/scripting/engine/manifest.js'
import { DEFAULT_MAX_PUBLISHES, DEFAULT_TIME_MS, type Effect, type RuleInput, type RuleLimits, SandboxHost } from '../../src/scripting/index.js'

const RULES_DIR = fileURLToPath(new URL('../../rules/', import.meta.url))
const ACCOUNT = 'acct'
const DEFAULT_NOW = 1_700_000_000_000

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

interface CaseInput {
  topic?: string
  payload?: string
  timer?: boolean
  event?: Json
  now?: number
}

interface ExpectedPublish {
  topic: string
  payload: string
  qos?: 0 | 1 | 2
  retain?: boolean
}

interface Case {
  name: string
  kv?: Record<string, string>
  now?: number
  inputs: CaseInput[]
  expect: {
    publishes?: ExpectedPublish[]
    returned?: Json
    kv?: Record<string, string>
    logs?: ('info' | 'warn' | 'error')[]
  }
}

interface BundledRule {
  name: string
  source: string
  manifest: RuleManifest
  cases: Case[]
}

const readText = (file: string): string => readFileSync(`${RULES_DIR}${file}`, 'utf8')
const names = readdirSync(RULES_DIR)
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -'.js'.length))
  .sort()

function toInput(input: CaseInput, now: number): RuleInput {
  if (input.timer === true) return { kind: 'timer', at: now }
  if (input.event !== undefined) return { kind: 'event', event: input.event }
  if (typeof input.topic !== 'string' || typeof input.payload !== 'string') throw new Error(`a case input needs topic and payload, timer or event: ${JSON.stringify(input)}`)
  return { kind: 'message', topic: input.topic, payload: input.payload }
}

function limitsOf(m: RuleManifest): RuleLimits {
  return {
    timeMs: m.limits.timeMs ?? DEFAULT_TIME_MS,
    maxPublishes: m.limits.maxPublishes ?? DEFAULT_MAX_PUBLISHES,
    ...(m.limits.memoryMb === undefined ? {} : { memoryMb: m.limits.memoryMb }),
  }
}

/** What a publish effect looks like next to its expectation: qos and retain only when the case names them. */
function shown(e: Extract<Effect, { kind: 'publish' }>, expected: ExpectedPublish | undefined): ExpectedPublish {
  return {
    topic: e.topic,
    payload: e.payload,
    ...(expected?.qos === undefined ? {} : { qos: e.qos }),
    ...(expected?.retain === undefined ? {} : { retain: e.retain }),
  }
}

let clock = DEFAULT_NOW
const host = await SandboxHost.start({ now: () => clock, kvSnapshot: () => ({}) })
/** The account's store as the worker sees it: reset to each case's kv with updateKv. */
let stored: Record<string, string> = {}

function resetKv(kv: Record<string, string>): void {
  const changes: Record<string, string | null> = {}
  for (const key of Object.keys(stored)) if (!Object.hasOwn(kv, key)) changes[key] = null
  Object.assign(changes, kv)
  if (Object.keys(changes).length > 0) host.updateKv(ACCOUNT, changes)
  stored = { ...kv }
}

t.test('every bundled rule passes its cases', async (t) => {
  try {
    await runAll(t)
  } finally {
    const failures = host.stats().disposeFailures
    const report = await host.dispose()
    t.same(report.disposeErrors, [], 'every rule sandbox disposed cleanly')
    t.equal(failures, 0, 'no sandbox failed to dispose while running')
  }
})

async function runAll(t: Test): Promise<void> {
  t.ok(names.length >= 4, `rules/ has the bundled rules (${names.join(', ')})`)
  for (const wanted of ['calc', 'threshold', 'convert']) t.ok(names.includes(wanted), `rules/${wanted}.js is bundled`)
  t.ok(names.includes('debounce') || names.includes('heartbeat'), 'a debounce or heartbeat rule is bundled')
  const guide = readText('README.md')

  const rules: BundledRule[] = []
  for (const name of names) {
    const parsed = parseManifest(JSON.parse(readText(`${name}.json`)), name, ACCOUNT)
    if (!parsed.ok) {
      t.fail(`${name}.json: ${parsed.error}`)
      continue
    }
    const cases = JSON.parse(readText(`${name}.cases.json`)) as Case[]
    t.ok(Array.isArray(cases) && cases.length > 0, `${name}.cases.json has cases`)
    t.match(guide, new RegExp(`\\b${name}\\b`), `rules/README.md presents ${name}`)
    rules.push({ name, source: readText(`${name}.js`), manifest: parsed.value, cases })
  }

  for (const rule of rules) {
    const loaded = await host.load({ account: ACCOUNT, name: rule.name, source: rule.source, limits: limitsOf(rule.manifest) })
    t.same(loaded, { ok: true, value: undefined }, `${rule.name}.js loads with the limits of ${rule.name}.json`)
  }

  for (const rule of rules) {
    await t.test(rule.name, async (t) => {
      const { manifest } = rule
      const filters = manifest.topics.map((f) => absoluteFilter(ACCOUNT, f))
      const all = rule.cases.flatMap((c) => c.inputs)
      // The cases exercise what the manifest declares, and only that.
      if (filters.length > 0) t.ok(all.some((i) => i.topic !== undefined && filters.some((f) => matchesFilter(f, i.topic as string))), 'a case triggers it by topic')
      if (manifest.interval !== undefined) t.ok(all.some((i) => i.timer === true), 'a case runs its timer')
      if (manifest.events.length > 0) t.ok(all.some((i) => i.event !== undefined), 'a case sends it an event')
      const direct = [`/${ACCOUNT}/run/${rule.name}`, `/${ACCOUNT}/runfile/${rule.name}`]
      for (const i of all) {
        if (i.topic !== undefined && !direct.includes(i.topic) && !filters.some((f) => matchesFilter(f, i.topic as string))) {
          t.fail(`${i.topic} reaches ${rule.name} neither through its triggers (${filters.join(', ')}) nor through run/runfile`)
        }
        if (i.timer === true && manifest.interval === undefined) t.fail('a timer input, but the manifest has no interval')
        if (i.event !== undefined && manifest.events.length === 0) t.fail('an event input, but the manifest has no events')
      }

      for (const c of rule.cases) {
        resetKv(c.kv ?? {})
        const kv: Record<string, string> = { ...(c.kv ?? {}) }
        const publishes: Extract<Effect, { kind: 'publish' }>[] = []
        const logs: string[] = []
        let returned: Json = null
        let failed = false
        for (const [n, input] of c.inputs.entries()) {
          clock = input.now ?? c.now ?? DEFAULT_NOW
          const r = await host.invoke(ACCOUNT, rule.name, [toInput(input, clock)])
          if (!r.ok) {
            t.fail(`${c.name}: input ${n + 1} failed: ${r.error.code}: ${r.error.message}`)
            failed = true
            break
          }
          for (const e of r.effects) {
            if (e.kind === 'publish') publishes.push(e)
            else if (e.kind === 'kv.set') kv[e.key] = e.value
            else if (e.kind === 'kv.delete') delete kv[e.key]
            else logs.push(e.level)
          }
          returned = r.returned === undefined ? null : (JSON.parse(r.returned) as Json)
        }
        stored = kv // what the worker holds: the effects of the inputs that succeeded
        if (failed) continue
        const expected = c.expect.publishes ?? []
        t.same(
          publishes.map((p, i) => shown(p, expected[i])),
          expected,
          `${c.name}: publishes`,
        )
        if ('returned' in c.expect) t.same(returned, c.expect.returned, `${c.name}: returns`)
        if (c.expect.kv !== undefined) t.same(kv, c.expect.kv, `${c.name}: kv after`)
        if (c.expect.logs !== undefined) t.same(logs, c.expect.logs, `${c.name}: logs`)
      }
    })
  }
}
