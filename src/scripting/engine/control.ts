import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../core/logger.js'
import type { Disposable } from '../../core/scope.js'
import type { LocalClient } from '../../mqtt/broker/local-client.js'
import type { Message } from '../../mqtt/session/message.js'
import { ownerOf } from '../../mqtt/topic/namespace.js'
import type { RuleEngine } from './engine.js'
import { manifestJson, NAME_PATTERN, parseManifest } from './manifest.js'
import type { RuleStore } from './rule-store.js'

/** The rules that run device graphs are named graph.NAME. */
export const GRAPH_RULE_PREFIX = 'graph.'

/** Rules run by `/A/runfile/NAME` are loaded under this prefix, apart from pushed rules. */
export const FILE_RULE_PREFIX = 'file.'

/** Why a pushed rule may not take this name (its prefix is perch's own); undefined when it may. */
export function reservedRuleName(name: string): string | undefined {
  if (name.startsWith(FILE_RULE_PREFIX)) return `rule names starting with "${FILE_RULE_PREFIX}" are for file rules`
  if (name.startsWith(GRAPH_RULE_PREFIX)) return `rule names starting with "${GRAPH_RULE_PREFIX}" are for device graphs (/A/graph/NAME)`
  return undefined
}

/**
 * The rule control topics of the reference engine: `/A/run/NAME`, `/A/runfile/NAME`,
 * `/A/scripts/put/NAME`, `/A/scripts/delete/NAME`, `/A/scripts/list`. Who may publish there is
 * the ACL's business (the `scripts` level is the owner's alone); answers go to `<topic>/result`.
 */
export class RuleControl implements Disposable {
  readonly #engine: RuleEngine
  readonly #store: RuleStore
  readonly #local: LocalClient
  readonly #rulesDir: string | undefined
  readonly #logger: Logger
  readonly #now: () => number
  readonly #subscriptions: Disposable[] = []
  /** File rules loaded, with the mtime of their source, so an edited file is loaded again. */
  readonly #files = new Map<string, number>()
  /** Pushes of one rule are applied in order: a later push never loses to an earlier, slower one. */
  #queue: Promise<void> = Promise.resolve()

  constructor(engine: RuleEngine, store: RuleStore, local: LocalClient, rulesDir: string | undefined, logger: Logger, now: () => number) {
    this.#now = now
    this.#engine = engine
    this.#store = store
    this.#local = local
    this.#rulesDir = rulesDir
    this.#logger = logger
    const on = (filter: string, fn: (m: Message, account: string, name: string) => Promise<unknown> | undefined): void => {
      const sub = local.subscribe(filter, (m) => {
        const account = ownerOf(m.topic)
        if (account === undefined) return
        const name = m.topic.slice(m.topic.lastIndexOf('/') + 1)
        this.#queue = this.#queue.then(async () => {
          try {
            const answer = await fn(m, account, name)
            if (answer !== undefined) this.#answer(m, answer)
          } catch (e) {
            this.#logger.error('rules.control-failed', { topic: m.topic, error: e instanceof Error ? e.message : String(e) })
            this.#answer(m, { ok: false, error: 'internal error' })
          }
        })
      })
      if (sub !== undefined) this.#subscriptions.push(sub)
    }
    on('/+/run/+', (m, account, name) => this.#run(m, account, name))
    on('/+/runfile/+', (m, account, name) => this.#runFile(m, account, name))
    on('/+/scripts/put/+', (m, account, name) => this.#put(m, account, name))
    on('/+/scripts/delete/+', (_m, account, name) => this.#delete(account, name))
    on('/+/scripts/list', (_m, account) => Promise.resolve(this.#list(account)))
  }

  dispose(): void {
    for (const s of this.#subscriptions.splice(0)) s.dispose()
  }

  #answer(m: Message, body: unknown): void {
    this.#local.publish(`${m.topic}/result`, JSON.stringify(body), { qos: 1 })
  }

  async #run(m: Message, account: string, name: string): Promise<unknown> {
    const queued = this.#engine.enqueue(account, name, {
      input: { kind: 'message', topic: m.topic, payload: m.payload.toString('utf8') },
      resultTopic: `${m.topic}/result`,
    })
    return queued ? undefined : { ok: false, error: `no rule "${name}"` }
  }

  async #runFile(m: Message, account: string, name: string): Promise<unknown> {
    if (this.#rulesDir === undefined) return { ok: false, error: 'no rules directory is configured (rules.dir)' }
    if (!new RegExp(NAME_PATTERN).test(name)) return { ok: false, error: `"${name}" is not a rule name` }
    const file = join(this.#rulesDir, `${name}.js`)
    let mtime: number
    try {
      mtime = (await stat(file)).mtimeMs
    } catch {
      return { ok: false, error: `no file rule "${name}"` }
    }
    const loadedAs = `${FILE_RULE_PREFIX}${name}`
    const cacheKey = `${account}\0${name}`
    if (this.#files.get(cacheKey) !== mtime || this.#engine.rule(account, loadedAs) === undefined) {
      const source = await readFile(file, 'utf8')
      let manifest: unknown
      try {
        manifest = JSON.parse(await readFile(join(this.#rulesDir, `${name}.json`), 'utf8'))
      } catch {
        manifest = undefined
      }
      // A file rule runs only on request: its triggers are for when it is pushed as a rule.
      const parsed = parseManifest({ limits: (manifest as { limits?: unknown } | undefined)?.limits }, loadedAs, account)
      if (!parsed.ok) return { ok: false, error: parsed.error }
      const installed = await this.#engine.install({ account, name: loadedAs, source, manifest: parsed.value, version: 1, origin: 'file' })
      if (!installed.ok) return { ok: false, error: installed.error, line: installed.line, column: installed.column }
      this.#files.set(cacheKey, mtime)
    }
    this.#engine.enqueue(account, loadedAs, {
      input: { kind: 'message', topic: m.topic, payload: m.payload.toString('utf8') },
      resultTopic: `/${account}/runfile/${name}/result`,
    })
    return undefined
  }

  async #put(m: Message, account: string, name: string): Promise<unknown> {
    const reserved = reservedRuleName(name)
    if (reserved !== undefined) return { ok: false, error: reserved }
    const text = m.payload.toString('utf8')
    let source = text
    let manifestInput: unknown
    if (text.trimStart().startsWith('{')) {
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch (e) {
        return { ok: false, error: `the push is neither JavaScript nor JSON: ${e instanceof Error ? e.message : String(e)}` }
      }
      const b = body as { source?: unknown; manifest?: unknown }
      if (typeof b.source !== 'string') return { ok: false, error: 'a JSON push needs "source" (the rule) and may have "manifest"' }
      source = b.source
      manifestInput = b.manifest
    }
    const manifest = parseManifest(manifestInput, name, account)
    if (!manifest.ok) return { ok: false, error: manifest.error }
    const version = (this.#store.rule(account, name)?.version ?? 0) + 1
    const installed = await this.#engine.install({ account, name, source, manifest: manifest.value, version, origin: 'mqtt' })
    if (!installed.ok) {
      const where = installed.line === undefined ? {} : { line: installed.line, column: installed.column }
      return { ok: false, error: installed.error, ...where }
    }
    this.#store.put(account, name, source, manifestJson(manifest.value), 'mqtt')
    return { ok: true, version }
  }

  async #delete(account: string, name: string): Promise<unknown> {
    const had = this.#store.remove(account, name)
    const ran = await this.#engine.uninstall(account, name)
    return had || ran ? { ok: true } : { ok: false, error: `no rule "${name}"` }
  }

  #list(account: string): unknown {
    const rules = this.#store.rules(account).map((r) => {
      const running = this.#engine.rule(account, r.name)
      return {
        name: r.name,
        version: r.version,
        origin: r.origin,
        updated: new Date(r.updatedAt).toISOString(),
        running: running !== undefined,
        suspended: running !== undefined && running.suspendedUntil > this.#now(),
        counters: running?.counters,
        lastError: running?.lastError,
      }
    })
    return { ok: true, rules }
  }
}
