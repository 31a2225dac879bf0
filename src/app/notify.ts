import { execFile } from 'node:child_process'
import type { Clock, TimerHandle } from '../core/clock.js'
import { describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'

/** Runs `command args` with `env` and calls `done` once, with the error if it could not run or failed. */
export type SpawnFn = (command: string, args: readonly string[], env: NodeJS.ProcessEnv, done: (error: Error | null) => void) => void

export interface NotifierDeps {
  readonly env: NodeJS.ProcessEnv
  readonly clock: Clock
  readonly logger: Logger
  /** The pid systemd should attribute the messages to (perch's own). */
  readonly pid: number
  /** Defaults to execFile with a 5 s timeout. */
  readonly spawn?: SpawnFn
  /** CLOCK_MONOTONIC in microseconds, as systemd measures it; defaults to process.hrtime. */
  readonly monotonicUsec?: () => bigint
}

const spawnSystemdNotify: SpawnFn = (command, args, env, done) => {
  execFile(command, [...args], { env, timeout: 5000 }, (error) => done(error))
}

// libuv's hrtime reads CLOCK_MONOTONIC on Linux, the clock MONOTONIC_USEC is compared against.
const monotonicUsec = (): bigint => process.hrtime.bigint() / 1000n

/**
 * sd_notify for a service started with Type=notify. Node has no AF_UNIX datagram sockets, so
 * every message is one `systemd-notify` child (which is why the unit needs NotifyAccess=all).
 * Does nothing unless $NOTIFY_SOCKET is set. Watchdog pings run from a timer on the event
 * loop, so a blocked loop misses them and systemd restarts perch. Failures are logged once and
 * never stop perch.
 */
export class SystemdNotifier {
  readonly #deps: NotifierDeps
  readonly #spawn: SpawnFn
  readonly #enabled: boolean
  #timer: TimerHandle | undefined
  #failed = false
  #disposed = false

  constructor(deps: NotifierDeps) {
    this.#deps = deps
    this.#spawn = deps.spawn ?? spawnSystemdNotify
    this.#enabled = (deps.env.NOTIFY_SOCKET ?? '') !== ''
  }

  /** Whether $NOTIFY_SOCKET is set, i.e. whether anything is ever sent. */
  get enabled(): boolean {
    return this.#enabled
  }

  /** The watchdog ping interval in ms (half of WATCHDOG_USEC), or undefined when there is no watchdog for this pid. */
  get watchdogIntervalMs(): number | undefined {
    const { env, pid } = this.#deps
    if (!this.#enabled) return undefined
    const usec = Number(env.WATCHDOG_USEC ?? '')
    if (!Number.isFinite(usec) || usec <= 0) return undefined
    if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== pid) return undefined
    return Math.max(1, Math.floor(usec / 2000))
  }

  /** Starts the watchdog pings, if systemd asked for them. */
  start(): void {
    const interval = this.watchdogIntervalMs
    if (interval === undefined || this.#timer !== undefined || this.#disposed) return
    const tick = (): void => {
      if (this.#disposed) return
      void this.#send(['WATCHDOG=1'])
      this.#timer = this.#deps.clock.setTimer(interval, tick)
    }
    this.#timer = this.#deps.clock.setTimer(interval, tick)
  }

  /** Start-up or a reload is complete: the listeners accept connections. */
  ready(status: string): Promise<void> {
    return this.#send(['READY=1', `STATUS=${status}`])
  }

  /**
   * A reload has begun; ready() ends it. Type=notify-reload units need MONOTONIC_USEC with it, to
   * tell this reload from an earlier one; Type=notify units take RELOADING=1 ... READY=1 alone.
   */
  reloading(): Promise<void> {
    const usec = (this.#deps.monotonicUsec ?? monotonicUsec)()
    return this.#send(['RELOADING=1', `MONOTONIC_USEC=${usec}`, 'STATUS=reloading'])
  }

  /** A free-form status line for `systemctl status`. */
  status(text: string): Promise<void> {
    return this.#send([`STATUS=${text}`])
  }

  /** Shutdown has begun; stops the watchdog pings. */
  stopping(): Promise<void> {
    this.#cancelTimer()
    return this.#send(['STOPPING=1', 'STATUS=stopping'])
  }

  dispose(): void {
    this.#cancelTimer()
    this.#disposed = true
  }

  #cancelTimer(): void {
    this.#timer?.cancel()
    this.#timer = undefined
  }

  #send(assignments: readonly string[]): Promise<void> {
    if (!this.#enabled || this.#disposed) return Promise.resolve()
    const args = [`--pid=${this.#deps.pid}`, ...assignments]
    return new Promise((resolve) => {
      const done = (error: Error | null): void => {
        if (error !== null && !this.#failed) {
          this.#failed = true
          this.#deps.logger.warn('perch.sd-notify-failed', { message: assignments.join(' '), error: describeError(error) })
        }
        resolve()
      }
      try {
        this.#spawn('systemd-notify', args, this.#deps.env, done)
      } catch (e) {
        done(e instanceof Error ? e : new Error(String(e)))
      }
    })
  }
}
