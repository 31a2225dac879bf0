// What a reload (SIGHUP) may change in a running perch. The keys taken over live are named once,
// in takeLive(); every other changed key is reported as waiting for a restart, never dropped.
import type { PerchConfig } from './config.js'

export interface ReloadPlan {
  /** What the running parts reflect afterwards: the running config with the live keys taken over. */
  readonly config: PerchConfig
  /** Changed keys (dotted paths) that apply now. */
  readonly applied: readonly string[]
  /** Changed keys that apply only from the next start. */
  readonly needsRestart: readonly string[]
}

/**
 * Compares `next` with what runs; `running` is what the last start or reload left in effect.
 * `logLevelLive`: whoever made the logger can change its level.
 */
export function planReload(running: PerchConfig, next: PerchConfig, logLevelLive = false): ReloadPlan {
  const taken = takeLive(running, next)
  const config = logLevelLive ? { ...taken, log: { ...taken.log, level: next.log.level } } : taken
  const needsRestart = changedKeys(config, next)
  const applied = changedKeys(running, next).filter((k) => !needsRestart.includes(k))
  return { config, applied, needsRestart }
}

/**
 * The live keys are values read afresh when a client connects, per write, per timer or per rule
 * failure. Limits a connected client was told in its CONNACK (packet size, receive maximum, topic
 * aliases) or that sessions and queues were built with stay as they are until a restart, as do
 * listeners, the data directory, persistence, auth, sync and the HTTP endpoint.
 */
function takeLive(running: PerchConfig, next: PerchConfig): PerchConfig {
  const l = next.limits
  return {
    ...running,
    limits: {
      ...running.limits,
      maxConnections: l.maxConnections,
      connectTimeout: l.connectTimeout,
      maxKeepalive: l.maxKeepalive,
      maxWriteBuffer: l.maxWriteBuffer,
      slowConsumerPolicy: l.slowConsumerPolicy,
    },
    sys: { ...running.sys, interval: next.sys.interval },
    rules: { ...running.rules, failureLimit: next.rules.failureLimit, coolOff: next.rules.coolOff, reloadInterval: next.rules.reloadInterval },
    devices: { ...running.devices, dir: next.devices.dir, board: next.devices.board },
  }
}

/** Dotted paths at which two plain-data values differ; arrays (listeners, auth rules) compare whole. */
export function changedKeys(a: unknown, b: unknown, at = ''): string[] {
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    return keys.flatMap((k) => changedKeys(a[k], b[k], at === '' ? k : `${at}.${k}`))
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [at]
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
