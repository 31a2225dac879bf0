import type { Logger } from '../core/logger.js'
import { checkSource, DIGEST, digestOf, type GraphPlan, graphSource, planGraph, runnable } from './compile.js'
import { deviceId, deviceTopics, type FeatureKind, LIMITS } from './model.js'
import { type Signaller, usedEndpoints } from './signals.js'
import type { FeatureStore, FunctionRecord, LinkRecord } from './store.js'

export type SandboxAnswer = { readonly ok: true } | { readonly ok: false; readonly error: string; readonly line?: number | undefined; readonly column?: number | undefined }

/** Where graph functions run: the account's rule sandbox, with the limits rules have. */
export interface GraphSandbox {
  /** Compiles and runs the module's top level once, then throws it away. */
  check(account: string, name: string, source: string): Promise<SandboxAnswer>
  /** Installs (or replaces) the rule that runs a graph; its failures are published on errorTopic. */
  install(account: string, graph: string, source: string, topics: readonly string[], errorTopic: string, outputs: number): Promise<SandboxAnswer>
  /** Removes the graph's rule, if it runs. */
  uninstall(account: string, graph: string): Promise<void>
}

/** Whether `account` may use a feature of a device of another account (a grant): the reason if not. */
export type LinkRights = (account: string, kind: FeatureKind, topic: string) => string | undefined

export interface GraphApiDeps {
  readonly store: FeatureStore
  /** Undefined when rules are disabled: graphs are kept but cannot run. */
  readonly sandbox: GraphSandbox | undefined
  readonly signals: Signaller
  readonly rights: LinkRights
  readonly now: () => number
  readonly logger: Logger
}

type Answer = Record<string, unknown>

const MAX_FUNCS = 32
const MAX_CODE = 65_536

const fail = (error: string, extra: Answer = {}): Answer => ({ state: 'error', error, ...extra })

/**
 * The graph API of the reference (ops on `/<account>/graph/<name>`): attach, add_funcs,
 * add_link, rm_link, set_join, list, detach. Every change is tried in the sandbox first and
 * stored only if the graph's rule installs, so a bad request changes nothing.
 */
export class GraphApi {
  readonly #d: GraphApiDeps

  constructor(deps: GraphApiDeps) {
    this.#d = deps
  }

  async handle(account: string, graph: string, body: Answer): Promise<Answer> {
    switch (body.op) {
      case 'attach': {
        const full = this.#noRoomFor(account, graph)
        if (full !== undefined) return full
        this.#d.store.ensureGraph(account, graph, this.#d.now())
        return { state: 'ok' }
      }
      case 'add_funcs':
        return this.#addFuncs(account, body)
      case 'add_link':
        return this.#link(account, graph, body, true)
      case 'rm_link':
        return this.#link(account, graph, body, false)
      case 'set_join':
        return this.#setJoin(account, graph, body)
      case 'list':
        return this.list(account, graph)
      case 'detach':
        return this.#detach(account, graph)
      default:
        return fail(`unknown op ${JSON.stringify(body.op ?? null)}: one of attach, add_funcs, add_link, rm_link, set_join, list, detach`)
    }
  }

  /** A graph as `list` answers it. */
  list(account: string, graph: string): Answer {
    const g = this.#d.store.graph(account, graph)
    if (g === undefined) return fail(`no graph "${graph}" in account ${account}`)
    const links = this.#d.store.links(account, graph).map((l) => {
      const d = this.#d.store.device(l.device)
      const s = this.#d.store.signals(l.device).find((x) => x.kind === l.kind && x.feature === l.feature)
      // The last control signal of the feature and the device's answer to it.
      const signal = s === undefined ? null : { command: s.command, state: s.state, error: s.error, at: new Date(s.at).toISOString() }
      const topic = d === undefined ? null : deviceTopics(d.account, d.id).feature(l.kind, l.feature)
      return { da_id: l.device, device: d?.name ?? null, presence: d?.presence ?? null, [l.kind]: l.feature, func: l.func, topic, signal }
    })
    const plan = this.#plan(account, graph, g.join)
    return { state: 'ok', graph, join: g.join, links, runs: runnable(plan) && this.#d.sandbox !== undefined, funcs: this.#d.store.functions(account).map((f) => f.digest) }
  }

  /** Rebuilds every stored graph (at start). */
  async restore(): Promise<void> {
    for (const g of this.#d.store.graphs()) {
      const installed = await this.#install(g.account, g.name, this.#plan(g.account, g.name, g.join))
      if (!installed.ok) this.#d.logger.error('graph.not-loaded', { account: g.account, graph: g.name, error: installed.error })
    }
  }

  /** After links were dropped elsewhere (a device went away): rebuild the graphs they were in. */
  async refresh(dropped: readonly LinkRecord[]): Promise<void> {
    const before = new Set([...usedEndpoints(this.#d.store.links()), ...usedEndpoints(dropped)])
    const graphs = new Set(dropped.map((l) => `${l.account}\0${l.graph}`))
    for (const key of graphs) {
      const [account = '', graph = ''] = key.split('\0')
      const installed = await this.#install(account, graph, this.#plan(account, graph, this.#d.store.graph(account, graph)?.join ?? null))
      if (!installed.ok) this.#d.logger.error('graph.not-loaded', { account, graph, error: installed.error })
    }
    this.#d.signals.changed(before, usedEndpoints(this.#d.store.links()))
  }

  async #addFuncs(account: string, body: Answer): Promise<Answer> {
    const { codes, digests } = body
    if (!Array.isArray(codes) || !Array.isArray(digests) || codes.length !== digests.length || codes.length === 0) {
      return fail('add_funcs needs "codes" and "digests": arrays of the same, non-zero length')
    }
    if (codes.length > MAX_FUNCS) return fail(`add_funcs takes at most ${MAX_FUNCS} functions at once`)
    const checked: { code: string; digest: string }[] = []
    for (const [i, code] of codes.entries()) {
      const digest = digests[i]
      if (typeof code !== 'string' || code.length > MAX_CODE) return fail(`codes[${i}] must be a string of at most ${MAX_CODE} characters`)
      if (typeof digest !== 'string' || !DIGEST.test(digest)) return fail(`digests[${i}] must be a SHA-256 digest in lower-case hex (64 characters)`)
      const actual = digestOf(code)
      if (actual !== digest) return fail(`digests[${i}] does not match its code: the SHA-256 of codes[${i}] is ${actual}`, { index: i })
      checked.push({ code, digest })
    }
    const fresh = new Set(checked.map((f) => f.digest).filter((d) => this.#d.store.func(account, d) === undefined))
    if (this.#d.store.countFunctions(account) + fresh.size > LIMITS.functions) return fail(`account ${account} may keep at most ${LIMITS.functions} functions`)
    const sandbox = this.#d.sandbox
    if (sandbox === undefined) return fail('functions cannot run: rules are disabled on this gateway (rules.enabled)')
    for (const [i, f] of checked.entries()) {
      const result = await sandbox.check(account, `function.${f.digest}`, checkSource(f.code))
      if (!result.ok) return fail(`codes[${i}] (${f.digest.slice(0, 12)}): ${result.error}`, { index: i, line: result.line, column: result.column })
    }
    const now = this.#d.now()
    this.#d.store.transaction(() => {
      for (const f of checked) this.#d.store.putFunction(account, f.digest, f.code, now)
    })
    return { state: 'ok', digests: checked.map((f) => f.digest) }
  }

  async #link(account: string, graph: string, body: Answer, add: boolean): Promise<Answer> {
    const kind: FeatureKind | undefined = typeof body.idf === 'string' ? 'idf' : typeof body.odf === 'string' ? 'odf' : undefined
    if (kind === undefined || (body.idf !== undefined && body.odf !== undefined)) return fail(`${String(body.op)} needs "da_id" and one of "idf" or "odf" (a feature name)`)
    const feature = String(body[kind])
    const id = typeof body.da_id === 'string' ? deviceId(body.da_id) : undefined
    if (id === undefined) return fail(`"da_id" must be a device id (a UUID), not ${JSON.stringify(body.da_id ?? null)}`)
    const { store } = this.#d
    const device = store.device(id)
    if (device === undefined) return fail(`no device ${id}`)
    if (!device.features.some((f) => f.kind === kind && f.name === feature)) return fail(`device ${id} (${device.name}) has no ${kind} "${feature}"`)
    const topic = deviceTopics(device.account, id).feature(kind, feature)
    if (device.account !== account) {
      const denied = this.#d.rights(account, kind, topic)
      if (denied !== undefined) return fail(`device ${id} belongs to another account and ${account} has no grant for ${topic}: ${denied}`)
    }
    const g = store.graph(account, graph)
    let links = store.links(account, graph)
    const same = (l: LinkRecord): boolean => l.device === id && l.kind === kind && l.feature === feature
    let func: string | null = null
    if (add) {
      if (body.func !== null && body.func !== undefined) {
        if (typeof body.func !== 'string' || store.func(account, body.func) === undefined) return fail(`no function ${JSON.stringify(body.func)} in account ${account}: add it with add_funcs first`)
        func = body.func
      }
      const existing = links.find(same)
      if (existing === undefined && links.filter((l) => l.kind === kind).length >= LIMITS.links) return fail(`graph "${graph}" has ${LIMITS.links} ${kind === 'idf' ? 'inputs' : 'outputs'}, the most one graph takes`)
      const full = this.#noRoomFor(account, graph)
      if (full !== undefined) return full
      const link: LinkRecord = { account, graph, device: id, kind, feature, func, seq: existing?.seq ?? Number.MAX_SAFE_INTEGER }
      links = existing === undefined ? [...links, link] : links.map((l) => (same(l) ? link : l))
    } else {
      if (g === undefined || !links.some(same)) return fail(`graph "${graph}" has no link to ${kind} "${feature}" of device ${id}`)
      links = links.filter((l) => !same(l))
    }
    const before = usedEndpoints(store.links())
    const installed = await this.#install(account, graph, this.#planOf(links, g?.join ?? null))
    if (!installed.ok) return fail(installed.error)
    store.transaction(() => {
      store.ensureGraph(account, graph, this.#d.now())
      if (add) store.putLink({ account, graph, device: id, kind, feature, func })
      else store.removeLink(account, graph, id, kind, feature)
    })
    this.#d.signals.changed(before, usedEndpoints(store.links()))
    return { state: 'ok', topic }
  }

  async #setJoin(account: string, graph: string, body: Answer): Promise<Answer> {
    const { store } = this.#d
    const g = store.graph(account, graph)
    const current = g?.join ?? null
    const prev = body.prev ?? null
    if (prev !== current) return fail(`the join function of graph "${graph}" is ${JSON.stringify(current)}, not ${JSON.stringify(prev)} ("prev" must name the current one)`)
    const next = body.new ?? null
    if (next !== null && (typeof next !== 'string' || store.func(account, next) === undefined)) return fail(`no function ${JSON.stringify(next)} in account ${account}: add it with add_funcs first`)
    const full = this.#noRoomFor(account, graph)
    if (full !== undefined) return full
    const installed = await this.#install(account, graph, this.#plan(account, graph, next))
    if (!installed.ok) return fail(installed.error)
    store.transaction(() => {
      store.ensureGraph(account, graph, this.#d.now())
      store.setJoin(account, graph, next)
    })
    return { state: 'ok', join: next }
  }

  async #detach(account: string, graph: string): Promise<Answer> {
    const { store } = this.#d
    if (store.graph(account, graph) === undefined) return fail(`no graph "${graph}" in account ${account}`)
    const before = usedEndpoints(store.links())
    await this.#d.sandbox?.uninstall(account, graph)
    store.transaction(() => store.removeGraph(account, graph))
    this.#d.signals.changed(before, usedEndpoints(store.links()))
    return { state: 'ok' }
  }

  /** The refusal when the request would make a new graph and the account has all it may keep. */
  #noRoomFor(account: string, graph: string): Answer | undefined {
    const { store } = this.#d
    if (store.graph(account, graph) !== undefined || store.graphs(account).length < LIMITS.graphs) return undefined
    return fail(`account ${account} has ${LIMITS.graphs} graphs, the most perch keeps for one account`)
  }

  #plan(account: string, graph: string, join: string | null): GraphPlan {
    return this.#planOf(this.#d.store.links(account, graph), join)
  }

  #planOf(links: readonly LinkRecord[], join: string | null): GraphPlan {
    return planGraph(links, join, (l) => deviceTopics(this.#d.store.device(l.device)?.account ?? l.account, l.device).feature(l.kind, l.feature))
  }

  /** Installs the graph's rule when it has an input and an output, removes it otherwise. */
  async #install(account: string, graph: string, plan: GraphPlan): Promise<SandboxAnswer> {
    const sandbox = this.#d.sandbox
    if (sandbox === undefined) return runnable(plan) ? { ok: false, error: 'graphs cannot run: rules are disabled on this gateway (rules.enabled)' } : { ok: true }
    if (!runnable(plan)) {
      await sandbox.uninstall(account, graph)
      return { ok: true }
    }
    const functions = new Map<string, FunctionRecord>(this.#d.store.functions(account).map((f) => [f.digest, f]))
    const source = graphSource(account, graph, plan, functions)
    const inputs = [...new Set(plan.inputs.map((i) => i.topic))]
    return sandbox.install(account, graph, source, inputs, `/${account}/graph/${graph}/error`, plan.outputs.length)
  }
}
