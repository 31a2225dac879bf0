// The only importer of serialport. A SerialPort object is used for one connection and then
// thrown away: after any sign of disconnection (close, EIO/ENXIO/EBADF, err.disconnected, the
// watchdog) it is discarded and a new one is built on the next attempt, so writes queued inside
// a stale object can never reach a new device. See notes/sensors.md sections 3 and 4.
import { realpath, stat } from 'node:fs/promises'
// The class on its own: the package root also loads its ten stream parsers and a mock binding.
import { SerialPort } from 'serialport/dist/serialport.js'
import type { Clock, TimerHandle } from '../../core/clock.js'
import { describeError, PerchError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import { err, ok, type Result } from '../../core/result.js'

export interface ManagedSerialPortOptions {
  /** The configured path; a by-id link is re-resolved at every attempt. */
  readonly path: string
  readonly baudRate: number
  readonly dataBits: 5 | 6 | 7 | 8
  readonly parity: 'none' | 'even' | 'odd'
  readonly stopBits: 1 | 2
  readonly reconnect: { readonly initialMs: number; readonly maxMs: number }
  /** How often the device path is checked while online (default 1000 ms). */
  readonly watchdogMs?: number
  /** Jitter source in [0, 1) (default Math.random). */
  readonly random?: () => number
}

export interface ManagedSerialPortHandlers {
  data(chunk: Buffer): void
  online(path: string): void
  /** The device was lost after being online. */
  offline(reason: string): void
  /** An attempt to open the device failed; another follows after the backoff. */
  attemptFailed(reason: string): void
}

export type PortState = 'idle' | 'opening' | 'online' | 'waiting' | 'disposed'

interface Pending {
  readonly settle: (r: Result<void, PerchError>) => void
}

/** An error the port reported: does it mean the device is gone? ENOTTY (modem-line ioctls on ptys) does not. */
export function classifyPortError(e: unknown): 'ignore' | 'disconnected' {
  const code = (e as { code?: unknown } | null)?.code
  if (code === 'ENOTTY') return 'ignore'
  const message = e instanceof Error ? e.message : String(e)
  if (/Inappropriate ioctl/i.test(message)) return 'ignore'
  // EIO/ENXIO/EBADF/ENODEV and err.disconnected are the usual signs; anything else also makes us
  // rebuild the port, since a serial port in an unknown error state is not worth keeping.
  return 'disconnected'
}

/** Exponential backoff with full jitter: a random delay in [0, min(max, initial * 2^attempt)). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30))
  return Math.floor(random() * cap)
}

export class ManagedSerialPort {
  readonly #o: ManagedSerialPortOptions
  readonly #clock: Clock
  readonly #log: Logger
  readonly #h: ManagedSerialPortHandlers
  readonly #random: () => number
  #state: PortState = 'idle'
  #port: SerialPort | undefined
  /** Bumped whenever the current port is abandoned; async results of an older generation are ignored. */
  #gen = 0
  #attempt = 0
  #timer: TimerHandle | undefined
  #watchdog: TimerHandle | undefined
  #device: { real: string; rdev: number } | undefined
  #pending = new Set<Pending>()

  constructor(options: ManagedSerialPortOptions, clock: Clock, logger: Logger, handlers: ManagedSerialPortHandlers) {
    this.#o = options
    this.#clock = clock
    this.#log = logger
    this.#h = handlers
    this.#random = options.random ?? Math.random
  }

  get state(): PortState {
    return this.#state
  }

  get online(): boolean {
    return this.#state === 'online'
  }

  start(): void {
    if (this.#state !== 'idle') return
    void this.#open()
  }

  /**
   * Writes to the device now. Refused while not online (never queued); a write still in flight
   * when the device is lost fails, and is never replayed to the next device.
   */
  write(data: Buffer): Promise<Result<void, PerchError>> {
    const port = this.#port
    if (this.#state !== 'online' || port === undefined) {
      return Promise.resolve(err(new PerchError('ESERIAL_OFFLINE', 'the serial device is not connected')))
    }
    return new Promise((resolve) => {
      let done = false
      const entry: Pending = {
        settle: (r) => {
          if (done) return
          done = true
          this.#pending.delete(entry)
          resolve(r)
        },
      }
      this.#pending.add(entry)
      try {
        port.write(data, (e) => {
          if (e) entry.settle(err(new PerchError('ESERIAL_WRITE', describeError(e), { cause: e })))
          else entry.settle(ok(undefined))
        })
      } catch (e) {
        entry.settle(err(new PerchError('ESERIAL_WRITE', describeError(e), { cause: e })))
      }
    })
  }

  /** Closes the device and stops retrying; resolves when the port is closed (or given up on). */
  async dispose(): Promise<void> {
    if (this.#state === 'disposed') return
    this.#state = 'disposed'
    this.#gen++
    this.#cancelTimers()
    this.#failPending('ESERIAL_CLOSED', 'the serial bridge was stopped')
    await this.#discard()
  }

  async #open(): Promise<void> {
    const gen = ++this.#gen
    this.#state = 'opening'
    let real: string
    let rdev: number
    try {
      real = await realpath(this.#o.path)
      rdev = (await stat(real)).rdev
    } catch (e) {
      if (gen === this.#gen) this.#failed(`cannot resolve ${this.#o.path}: ${describeError(e)}`)
      return
    }
    if (gen !== this.#gen || this.#state !== 'opening') return
    let port: SerialPort
    try {
      port = new SerialPort({
        path: real,
        baudRate: this.#o.baudRate,
        dataBits: this.#o.dataBits,
        parity: this.#o.parity,
        stopBits: this.#o.stopBits,
        autoOpen: false,
        lock: true,
      })
    } catch (e) {
      this.#failed(`cannot create the port for ${real}: ${describeError(e)}`)
      return
    }
    this.#port = port
    port.on('error', (e: Error) => {
      if (gen !== this.#gen) return
      if (classifyPortError(e) === 'ignore') {
        this.#log.debug('serial_error_ignored', { path: real, error: e })
        return
      }
      this.#lost(`port error: ${describeError(e)}`)
    })
    port.on('close', (e: Error | null | undefined) => {
      if (gen !== this.#gen) return
      this.#lost(e ? `closed: ${describeError(e)}` : 'closed')
    })
    port.on('data', (chunk: Buffer) => {
      if (gen !== this.#gen || this.#state !== 'online') return
      try {
        this.#h.data(chunk)
      } catch (e) {
        this.#log.error('serial_data_handler_failed', { error: e })
      }
    })
    port.open((e) => {
      if (gen !== this.#gen) {
        // Abandoned while opening (disposed or superseded): release what the open acquired.
        if (!e) closeQuietly(port)
        return
      }
      if (e) {
        this.#port = undefined
        port.removeAllListeners()
        port.on('error', () => {})
        this.#failed(`cannot open ${real}: ${describeError(e)}`)
        return
      }
      this.#state = 'online'
      this.#attempt = 0
      this.#device = { real, rdev }
      this.#armWatchdog(gen)
      this.#log.info('serial_online', { path: this.#o.path, device: real })
      this.#h.online(real)
    })
  }

  #failed(reason: string): void {
    if (this.#state === 'disposed') return
    this.#log.debug('serial_open_failed', { path: this.#o.path, reason })
    this.#h.attemptFailed(reason)
    this.#scheduleRetry()
  }

  #lost(reason: string): void {
    if (this.#state !== 'online' && this.#state !== 'opening') return
    const wasOnline = this.#state === 'online'
    this.#gen++
    this.#cancelTimers()
    this.#failPending('ESERIAL_LOST', `the serial device was lost: ${reason}`)
    void this.#discard()
    this.#log.warn('serial_lost', { path: this.#o.path, reason })
    if (wasOnline) this.#h.offline(reason)
    else this.#h.attemptFailed(reason)
    this.#scheduleRetry()
  }

  #scheduleRetry(): void {
    if (this.#state === 'disposed') return
    this.#state = 'waiting'
    const delay = backoffDelay(this.#attempt++, this.#o.reconnect.initialMs, this.#o.reconnect.maxMs, this.#random)
    this.#timer?.cancel()
    this.#timer = this.#clock.setTimer(delay, () => {
      this.#timer = undefined
      if (this.#state === 'waiting') void this.#open()
    })
  }

  /**
   * Every interval: the configured path must still resolve to the device that was opened (same
   * realpath, same rdev). A vanished or replaced path means the device is gone even when the
   * port reported nothing: a hung-up tty can leave the binding spinning on 0-byte reads without
   * a close event, and closing the port is what stops that spin.
   */
  #armWatchdog(gen: number): void {
    this.#watchdog = this.#clock.setTimer(this.#o.watchdogMs ?? 1000, () => {
      this.#watchdog = undefined
      void this.#check(gen)
    })
  }

  async #check(gen: number): Promise<void> {
    const opened = this.#device
    if (gen !== this.#gen || this.#state !== 'online' || opened === undefined) return
    let problem: string | undefined
    try {
      const real = await realpath(this.#o.path)
      const { rdev } = await stat(real)
      if (real !== opened.real) problem = `device path now leads to ${real}`
      else if (rdev !== opened.rdev) problem = 'device number changed'
    } catch (e) {
      problem = `device path vanished: ${describeError(e)}`
    }
    if (gen !== this.#gen || this.#state !== 'online') return
    const port = this.#port
    if (problem === undefined && port !== undefined && !port.isOpen) problem = 'port closed without an event'
    if (problem !== undefined) {
      this.#lost(`watchdog: ${problem}`)
      return
    }
    this.#armWatchdog(gen)
  }

  #cancelTimers(): void {
    this.#timer?.cancel()
    this.#timer = undefined
    this.#watchdog?.cancel()
    this.#watchdog = undefined
  }

  #failPending(code: string, message: string): void {
    const all = [...this.#pending]
    this.#pending.clear()
    for (const p of all) p.settle(err(new PerchError(code, message)))
  }

  /** Forgets the current port object: no listeners of ours, an inert error listener, a best-effort close. */
  async #discard(): Promise<void> {
    const port = this.#port
    this.#port = undefined
    this.#device = undefined
    if (port === undefined) return
    port.removeAllListeners()
    port.on('error', () => {})
    await closeQuietly(port)
  }
}

function closeQuietly(port: SerialPort): Promise<void> {
  return new Promise((resolve) => {
    if (!port.isOpen) {
      resolve()
      return
    }
    const timer = setTimeout(resolve, 2000)
    timer.unref()
    try {
      port.close(() => {
        clearTimeout(timer)
        resolve()
      })
    } catch {
      clearTimeout(timer)
      resolve()
    }
  })
}
