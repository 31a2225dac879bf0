import { type Logger as Pino, pino } from 'pino'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export type LogFields = Record<string, unknown>

/** One JSON event per line, for journald and for tests that read the log. */
export interface Logger {
  debug(event: string, fields?: LogFields): void
  info(event: string, fields?: LogFields): void
  warn(event: string, fields?: LogFields): void
  error(event: string, fields?: LogFields): void
  child(fields: LogFields): Logger
}

/** The logger a process starts with: its level can change while it runs (SIGHUP). */
export interface RootLogger extends Logger {
  setLevel(level: LogLevel): void
}

/**
 * Lines look like {"level":"info","time":"<ISO>",...bindings,...fields,"event":"x"}, written
 * synchronously to `write` one line per call, so that a crash loses nothing already logged.
 */
export function createLogger(level: LogLevel, write: (line: string) => void, now: () => number, base: LogFields = {}): RootLogger {
  // One threshold shared by the root and every child, so a new level reaches loggers made
  // earlier; pino's own level stays at the lowest and leaves the filtering to it.
  const threshold = { min: ORDER[level] }
  const root = pino(
    {
      level: 'debug',
      // journald records the pid and host of every line already.
      base: null,
      messageKey: 'event',
      timestamp: () => `,"time":"${new Date(now()).toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      // Values arrive already made plain (see `plain`); pino's own error serializer would add the stack.
      serializers: { err: (value: unknown) => value },
    },
    { write },
  )
  const logger = wrap(root, root, threshold, {}).child(base)
  const setLevel = (l: LogLevel): void => {
    threshold.min = ORDER[l]
  }
  return { ...logger, setLevel }
}

function wrap(root: Pino, log: Pino, threshold: { min: number }, bindings: LogFields): Logger {
  const emit = (lvl: LogLevel, event: string, fields?: LogFields): void => {
    if (ORDER[lvl] < threshold.min) return
    if (fields === undefined) {
      log[lvl](event)
      return
    }
    const own = plainFields(fields)
    // pino writes bindings and fields side by side; a key in both would appear twice on the line.
    if (Object.keys(own).some((k) => k in bindings)) root[lvl]({ ...bindings, ...own }, event)
    else log[lvl](own, event)
  }
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (fields) => {
      const merged = { ...bindings, ...plainFields(fields) }
      return wrap(root, root.child(merged), threshold, merged)
    },
  }
}

/** The keys every line carries; a field by one of these names is written with a trailing '_'. */
const RESERVED = new Set(['time', 'level', 'event'])

function plainFields(fields: LogFields): LogFields {
  const out: LogFields = {}
  for (const [key, value] of Object.entries(fields)) out[RESERVED.has(key) ? `${key}_` : key] = plain(value, [])
  return out
}

/**
 * What JSON.stringify sees, with the two cases it gets wrong for a log: an Error (its message is
 * not enumerable, so it would print as {}) and a bigint (which would throw).
 */
function plain(value: unknown, parents: object[]): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (typeof value !== 'object' || value === null) return value
  if (value instanceof Error) return { message: value.message, code: (value as { code?: unknown }).code }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value
  if (parents.includes(value)) return '[Circular]'
  const inner = [...parents, value]
  if (Array.isArray(value)) return value.map((v: unknown) => plain(v, inner))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = plain(v, inner)
  return out
}

export function silentLogger(): Logger {
  const noop = (): void => {}
  const logger: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => logger }
  return logger
}

export function isLogLevel(s: string): s is LogLevel {
  return Object.hasOwn(ORDER, s)
}
