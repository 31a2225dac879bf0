// Shared setup for the sandbox host tests: real QuickJS in a real worker thread, no mocks.
import type { Test } from 'tap'
import { type InvokeResult, type RuleInput, type RuleLimits, SandboxHost, type SandboxHostOptions } from '../../src/scripting/index.js'

export const LIMITS: RuleLimits = { timeMs: 50, maxPublishes: 100 }
export const NOW = 1_700_000_000_000

export function message(topic: string, payload: string): RuleInput {
  return { kind: 'message', topic, payload }
}

export async function startHost(options: Partial<SandboxHostOptions> = {}): Promise<SandboxHost> {
  return SandboxHost.start({ now: () => NOW, ...options })
}

export async function loadOk(t: Test, host: SandboxHost, account: string, name: string, source: string, limits: Partial<RuleLimits> = {}): Promise<void> {
  const r = await host.load({ account, name, source, limits: { ...LIMITS, ...limits } })
  t.same(r, { ok: true, value: undefined }, `${account}/${name} loads`)
}

/** A healthy rule in its own account, to show the host still serves others after an attack. */
export const ECHO = `export function onMessage(msg) { publish('echo/' + msg.topic, msg.payload); return msg.payload }`

export async function echoWorks(t: Test, host: SandboxHost, account = 'bystander'): Promise<void> {
  const r = await host.invoke(account, 'echo', [message('ping', 'pong')])
  t.same(r.ok && r.effects, [{ kind: 'publish', topic: 'echo/ping', payload: 'pong', qos: 0, retain: false }], `${account}/echo still answers`)
}

export function failedWith(r: InvokeResult): string | undefined {
  return r.ok ? undefined : r.error.code
}

export function errorText(r: InvokeResult): string {
  return r.ok ? '' : r.error.message
}

/** Disposes the host and checks that every runtime and context was disposed cleanly. */
export async function disposeClean(t: Test, host: SandboxHost): Promise<void> {
  const failures = host.stats().disposeFailures
  const report = await host.dispose()
  t.same(report, { disposeErrors: [], leaks: [] }, 'every sandbox disposes cleanly')
  t.equal(failures, 0, 'no sandbox failed to dispose while running')
}

/** Host paths and host stack frames never reach a rule author. */
export function sanitized(t: Test, text: string): void {
  t.notMatch(text, /\/work\/|node_modules|file:\/\/|\.ts:\d|\.mjs:\d|perch:host|quickjs-emscripten/, `no host detail in: ${text}`)
}
