import type { Clock, TimerHandle } from '../../core/clock.js'
import type { Logger } from '../../core/logger.js'
import type { Disposable } from '../../core/scope.js'
import type { Broker } from '../../mqtt/broker/broker.js'
import type { BrokerEvent } from '../../mqtt/broker/events.js'
import { accountClient, LOCAL_CLIENT_PREFIX, type LocalClient } from '../../mqtt/broker/local-client.js'
import { createMessage, type Message } from '../../mqtt/session/message.js'
import type { SandboxHost } from '../host.js'
import type { Effect, InvokeError, RuleSpec } from '../types.js'
import { absoluteFilter, type RuleManifest } from './manifest.js'
import type { RuleStore } from './rule-store.js'
import { type Queued, RunningRule } from './running-rule.js'

/** Rule names are at most this long (NAME_PATTERN). */
const MAX_RULE_NAME = 64

/** Batches per rule at the sandbox at once: two keep the worker busy, more only add latency. */
const PIPELINE = 2

export interface EngineSettings {
  /** Consecutive failed invocations after which a rule is suspended... */
  readonly failureLimit: number
  /** ...for this long. */
  readonly coolOffMs: number
  /** KV writes and log lines are written together at most this long after the first. */
  readonly flushIntervalMs: number
}

export interface LoadedRule {
  readonly account: string
  readonly name: string
  readonly source: string
  readonly manifest: RuleManifest
  readonly version: number
  readonly origin: string
  /** Where its failures are published; /<account>/rules/<name>/error when absent. */
  readonly errorTopic?: string | undefined
}

export type CompileAnswer = { ok: true } | { ok: false; error: string; line?: number | undefined; column?: number | undefined }

/**
 * Runs account rules for the broker: each account gets an in-process client with the account's
 * identity, so a rule's triggers and publishes pass the same ACL as any client; the router only
 * puts messages into a rule's bounded inbox, and the inbox is fed to the sandbox in batches.
 * A call's effects are applied only when it succeeded: publishes through the account's client,
 * KV writes through a write-behind buffer flushed to the store.
 */
export class RuleEngine implements Disposable {
  readonly #broker: Broker
  /** The sandbox worker, started with the first rule: a gateway without rules pays nothing for it. */
  readonly #host: () => Promise<SandboxHost>
  readonly #store: RuleStore
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #settings: EngineSettings
  readonly #clients = new Map<string, LocalClient>()
  readonly #rules = new Map<string, RunningRule>()
  readonly #kv = new Map<string, Map<string, string | null>>()
  #logs: { account: string; name: string; line: { at: number; level: string; message: string } }[] = []
  #flushTimer: TimerHandle | undefined
  readonly #events: Disposable
  #closed = false

  constructor(broker: Broker, host: () => Promise<SandboxHost>, store: RuleStore, clock: Clock, logger: Logger, settings: EngineSettings) {
    this.#broker = broker
    this.#host = host
    this.#store = store
    this.#clock = clock
    this.#logger = logger
    this.#settings = settings
    this.#events = broker.events.on((e) => this.#onEvent(e))
  }

  get rules(): ReadonlyMap<string, RunningRule> {
    return this.#rules
  }

  rule(account: string, name: string): RunningRule | undefined {
    return this.#rules.get(key(account, name))
  }

  /**
   * Compiles the rule and, only if that works, makes it the running one (its old version keeps
   * running otherwise) with its triggers. Returns why not.
   */
  async install(r: LoadedRule): Promise<CompileAnswer> {
    const client = this.clientFor(r.account)
    const outside = r.manifest.topics.map((f) => absoluteFilter(r.account, f)).filter((f) => this.#broker.hooks.authorizeSubscribe(client.client, f) === 'deny')
    if (outside.length > 0) return { ok: false, error: `triggers outside the account's read rights: ${outside.join(', ')}` }
    const spec: RuleSpec = { account: r.account, name: r.name, source: r.source, limits: limitsOf(r.manifest) }
    const loaded = await (await this.#host()).load(spec)
    if (!loaded.ok) return { ok: false, error: loaded.error.message, line: loaded.error.line, column: loaded.error.column }
    const k = key(r.account, r.name)
    let rule = this.#rules.get(k)
    if (rule === undefined) {
      rule = new RunningRule(r.account, r.name, r.manifest, r.version, r.origin)
      this.#rules.set(k, rule)
    } else {
      rule.manifest = r.manifest
      rule.version = r.version
      rule.origin = r.origin
      rule.failures = 0
      rule.suspendedUntil = 0
    }
    rule.errorTopic = r.errorTopic
    const denied = this.#arm(rule)
    if (denied.length > 0) this.#logger.warn('rule.trigger-denied', { account: r.account, rule: r.name, filters: denied })
    this.#logger.info('rule.installed', { account: r.account, rule: r.name, version: r.version, origin: r.origin })
    return { ok: true }
  }

  /**
   * Compiles a module in the account's sandbox and runs its top level once (with the time a
   * rule's load gets), then drops it: whether code would load, without running it as a rule.
   * `name` (what errors call the module) is longer than any rule name, so no rule is replaced.
   */
  async check(account: string, name: string, source: string): Promise<CompileAnswer> {
    if (name.length <= MAX_RULE_NAME) throw new Error(`a module checked apart from the rules needs a name longer than ${MAX_RULE_NAME} characters`)
    const host = await this.#host()
    const loaded = await host.load({ account, name, source, limits: { timeMs: 50, maxPublishes: 0 } })
    if (!loaded.ok) return { ok: false, error: loaded.error.message, line: loaded.error.line, column: loaded.error.column }
    await host.unload(account, name)
    return { ok: true }
  }

  async uninstall(account: string, name: string): Promise<boolean> {
    const k = key(account, name)
    const rule = this.#rules.get(k)
    if (rule === undefined) return false
    rule.dispose()
    this.#rules.delete(k)
    await (await this.#host()).unload(account, name)
    this.#logger.info('rule.removed', { account, rule: name })
    return true
  }

  /** Queues an input for a rule; false when there is no such rule. */
  enqueue(account: string, name: string, q: Queued): boolean {
    const rule = this.#rules.get(key(account, name))
    if (rule === undefined) return false
    rule.enqueue(q, this.#clock.now())
    this.#pump(rule)
    return true
  }

  /** The client a rule of `account` acts as: the account's rights, never more. */
  clientFor(account: string): LocalClient {
    let c = this.#clients.get(account)
    if (c === undefined) {
      c = this.#broker.openLocal(accountClient(account, 'rules'))
      this.#clients.set(account, c)
    }
    return c
  }

  /** Writes what the write-behind buffer holds. */
  flush(): void {
    this.#flushTimer?.cancel()
    this.#flushTimer = undefined
    const kv = new Map(this.#kv)
    const logs = this.#logs
    this.#kv.clear()
    this.#logs = []
    try {
      this.#store.flush(kv, logs)
    } catch (e) {
      // Kept for the next flush: a busy or full disk must not lose rule state.
      for (const [account, changes] of kv) {
        const pending = this.#kv.get(account) ?? new Map<string, string | null>()
        for (const [k, v] of changes) if (!pending.has(k)) pending.set(k, v)
        this.#kv.set(account, pending)
      }
      this.#logs = [...logs, ...this.#logs]
      this.#logger.error('rules.flush-failed', { error: e instanceof Error ? e.message : String(e) })
      this.#scheduleFlush()
    }
  }

  dispose(): void {
    if (this.#closed) return
    this.#closed = true
    this.#events.dispose()
    for (const r of this.#rules.values()) r.dispose()
    this.#rules.clear()
    this.flush()
    for (const c of this.#clients.values()) c.dispose()
    this.#clients.clear()
  }

  /** Subscribes the rule's topics and starts its timer; returns the filters its account may not read. */
  #arm(rule: RunningRule): string[] {
    const client = this.clientFor(rule.account)
    const triggers: Disposable[] = []
    const denied: string[] = []
    for (const f of rule.manifest.topics) {
      const filter = absoluteFilter(rule.account, f)
      const sub = client.subscribe(filter, (m) => {
        rule.enqueue({ input: { kind: 'message', topic: m.topic, payload: m.payload.toString('utf8') } }, this.#clock.now())
        this.#pump(rule)
      })
      if (sub === undefined) denied.push(filter)
      else triggers.push(sub)
    }
    const interval = rule.manifest.interval
    if (interval !== undefined) {
      let timer: TimerHandle | undefined
      const tick = (): void => {
        rule.enqueue({ input: { kind: 'timer', at: this.#clock.now() } }, this.#clock.now())
        this.#pump(rule)
        timer = this.#clock.setTimer(interval * 1000, tick)
      }
      timer = this.#clock.setTimer(interval * 1000, tick)
      triggers.push({ dispose: () => timer?.cancel() })
    }
    rule.setTriggers(triggers)
    return denied
  }

  #onEvent(e: BrokerEvent): void {
    if (e.type !== 'client.connected' && e.type !== 'client.disconnected') return
    const account = e.client.account
    if (account === undefined || e.client.clientId.startsWith(LOCAL_CLIENT_PREFIX)) return
    const event = { type: e.type, clientId: e.client.clientId, address: e.client.remoteAddress }
    for (const rule of this.#rules.values()) {
      if (rule.account !== account || !rule.manifest.events.includes(e.type)) continue
      rule.enqueue({ input: { kind: 'event', event } }, this.#clock.now())
      this.#pump(rule)
    }
  }

  /**
   * Up to PIPELINE batches per rule at the sandbox, so the worker has the next batch while this
   * thread applies the previous one's effects. Order holds: an account's calls run one after
   * another in the worker, and their answers are applied in the order they arrive.
   */
  #pump(rule: RunningRule): void {
    if (rule.inFlight >= PIPELINE || rule.queued === 0 || this.#closed) return
    rule.inFlight++
    void this.#drain(rule)
  }

  async #drain(rule: RunningRule): Promise<void> {
    try {
      for (let batch = rule.nextBatch(); batch.length > 0 && !this.#closed; batch = rule.nextBatch()) {
        if (this.#rules.get(key(rule.account, rule.name)) !== rule) return
        const result = await (await this.#host()).invoke(
          rule.account,
          rule.name,
          batch.map((q) => q.input),
        )
        rule.counters.invocations++
        rule.counters.inputs += batch.length
        if (result.ok) {
          rule.failures = 0
          this.#apply(rule, result.effects)
          const resultTopic = batch[batch.length - 1]?.resultTopic
          if (resultTopic !== undefined && result.returned !== undefined) this.clientFor(rule.account).publish(resultTopic, result.returned, { qos: 1 })
        } else this.#failed(rule, result.error)
      }
    } catch (e) {
      this.#failed(rule, { code: 'crashed', message: e instanceof Error ? e.message : String(e) })
    } finally {
      rule.inFlight--
      if (rule.queued > 0 && !this.#closed && this.#clock.now() >= rule.suspendedUntil) setImmediate(() => this.#pump(rule))
    }
  }

  #apply(rule: RunningRule, effects: readonly Effect[]): void {
    const client = this.clientFor(rule.account)
    for (const e of effects) {
      switch (e.kind) {
        case 'publish': {
          const topic = absoluteFilter(rule.account, e.topic)
          if (!client.publish(topic, e.payload, { qos: e.qos, retain: e.retain })) rule.counters.publishesDenied++
          break
        }
        case 'kv.set':
        case 'kv.delete': {
          const pending = this.#kv.get(rule.account) ?? new Map<string, string | null>()
          pending.set(e.key, e.kind === 'kv.set' ? e.value : null)
          this.#kv.set(rule.account, pending)
          this.#scheduleFlush()
          break
        }
        case 'log':
          this.#logs.push({ account: rule.account, name: rule.name, line: { at: this.#clock.now(), level: e.level, message: e.message } })
          this.#logger.debug('rule.log', { account: rule.account, rule: rule.name, ruleLevel: e.level, message: e.message })
          this.#scheduleFlush()
          break
      }
    }
  }

  #failed(rule: RunningRule, error: InvokeError): void {
    rule.counters.errors++
    rule.failures++
    rule.lastError = `${error.code}: ${error.message}`
    const now = this.#clock.now()
    const suspend = rule.failures >= this.#settings.failureLimit
    if (suspend) {
      rule.suspendedUntil = now + this.#settings.coolOffMs
      rule.clearInbox()
      rule.failures = 0
    }
    const body = {
      code: error.code,
      message: error.message,
      consecutive: suspend ? this.#settings.failureLimit : rule.failures,
      suspendedUntil: suspend ? new Date(rule.suspendedUntil).toISOString() : undefined,
      time: new Date(now).toISOString(),
    }
    this.#logs.push({ account: rule.account, name: rule.name, line: { at: now, level: 'error', message: `${error.code}: ${error.message}` } })
    this.#scheduleFlush()
    this.#logger.warn(suspend ? 'rule.suspended' : 'rule.failed', { account: rule.account, rule: rule.name, code: error.code, message: error.message })
    // Perch's own client writes here: the account may read its rules' errors but not fake them.
    this.#broker.publish(errorMessage(rule.errorTopic ?? `/${rule.account}/rules/${rule.name}/error`, JSON.stringify(body)))
  }

  /** A message from perch itself (not the account) on one of the account's rule topics. */
  notify(topic: string, body: unknown): void {
    this.#broker.publish(errorMessage(topic, JSON.stringify(body)))
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined || this.#closed) return
    this.#flushTimer = this.#clock.setTimer(this.#settings.flushIntervalMs, () => {
      this.#flushTimer = undefined
      this.flush()
    })
  }
}

function key(account: string, name: string): string {
  return `${account}\0${name}`
}

function limitsOf(m: RuleManifest): RuleSpec['limits'] {
  return {
    timeMs: m.limits.timeMs ?? 50,
    maxPublishes: m.limits.maxPublishes ?? 100,
    ...(m.limits.memoryMb === undefined ? {} : { memoryMb: m.limits.memoryMb }),
  }
}

function errorMessage(topic: string, body: string): Message {
  return createMessage({ topic, payload: Buffer.from(body), qos: 0, retain: false, properties: undefined, expiresAt: undefined, origin: `${LOCAL_CLIENT_PREFIX}rules` })
}
