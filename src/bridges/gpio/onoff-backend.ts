// The sysfs GPIO backend, through onoff 6 (the only importer of onoff). onoff hard-codes
// /sys/class/gpio. This adapter exports lines itself (so a refused export is mapped to a clear
// message instead of onoff's busy retry loop), waits for udev to open up the new files, then
// lets onoff configure direction, edge and active_low and arm epoll for interrupts.
import { closeSync, constants, existsSync, openSync, readFileSync, writeSync } from 'node:fs'
import { Gpio } from 'onoff'
import { err, ok, type Result } from '../../core/result.js'
import {
  type ChipInfo,
  type ErrorContext,
  type GpioBackend,
  type GpioError,
  type GpioInputLine,
  type GpioOutputLine,
  gpioError,
  type InputRequest,
  type Level,
  type LineRequest,
  type OutputRequest,
} from './backend.js'
import { resolveChipBase, SYSFS_GPIO_ROOT } from './chip-base.js'

export interface OnoffBackendOptions {
  /** Where gpiochip*\/{label,base,ngpio} are read; onoff itself always uses /sys/class/gpio. */
  readonly chipRoot?: string
  /** How long to wait after an export for udev to hand the new files to the gpio group. */
  readonly settleMs?: number
  readonly sleep?: (ms: number) => Promise<void>
}

const ROOT = SYSFS_GPIO_ROOT

/** Writes to a sysfs attribute: O_WRONLY without O_CREAT, as sysfs (export is write-only). */
function writeAttr(path: string, text: string): void {
  const fd = openSync(path, constants.O_WRONLY)
  try {
    writeSync(fd, text)
  } finally {
    closeSync(fd)
  }
}

function tryOpen(path: string): unknown {
  try {
    closeSync(openSync(path, 'r+'))
    return undefined
  } catch (e) {
    return e
  }
}

export function createOnoffBackend(options: OnoffBackendOptions = {}): GpioBackend {
  const chipRoot = options.chipRoot ?? ROOT
  const settleMs = options.settleMs ?? 2000
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))

  /** Exports base+pin unless it already is, and waits until its value file opens read-write. */
  async function exportLine(req: LineRequest): Promise<Result<number, GpioError>> {
    const line = req.base + req.pin
    const ctx = (op: ErrorContext['op'], path: string): ErrorContext => ({ op, path, pin: req.pin, base: req.base })
    const dir = `${ROOT}/gpio${line}`
    if (!existsSync(dir)) {
      try {
        writeAttr(`${ROOT}/export`, String(line))
      } catch (e) {
        return err(gpioError(e, ctx('export', `${ROOT}/export`)))
      }
    }
    // The kernel creates gpioN/ at once; udev changes group and mode a little later.
    const deadline = Date.now() + settleMs
    for (;;) {
      const e = tryOpen(`${dir}/value`)
      if (e === undefined) return ok(line)
      if (Date.now() >= deadline) return err(gpioError(e, ctx('open', `${dir}/value`)))
      await sleep(20)
    }
  }

  function construct(line: number, pin: number, make: () => Gpio): Result<Gpio, GpioError> {
    try {
      return ok(make())
    } catch (e) {
      return err(gpioError(e, { op: 'open', path: `${ROOT}/gpio${line}`, pin }))
    }
  }

  function lineOps(gpio: Gpio, line: number, pin: number) {
    let released = false
    const valuePath = `${ROOT}/gpio${line}/value`
    return {
      read(): Result<Level, GpioError> {
        try {
          return ok(gpio.readSync())
        } catch (e) {
          return err(gpioError(e, { op: 'read', path: valuePath, pin }))
        }
      },
      release(): Result<void, GpioError> {
        if (released) return ok(undefined)
        released = true
        try {
          // After a failed watch() onoff keeps the listener and unexport() would throw: clear it first.
          gpio.unwatchAll()
        } catch {
          // the listener list is emptied before epoll's remove throws
        }
        try {
          gpio.unexport()
          return ok(undefined)
        } catch (e) {
          return err(gpioError(e, { op: 'unexport', path: `${ROOT}/unexport`, pin }))
        }
      },
    }
  }

  return {
    base(labels: readonly string[]): Promise<Result<ChipInfo, GpioError>> {
      return resolveChipBase(labels, chipRoot)
    },

    async openInput(req: InputRequest): Promise<Result<GpioInputLine, GpioError>> {
      const exported = await exportLine(req)
      if (!exported.ok) return exported
      const line = exported.value
      const made = construct(line, req.pin, () => new Gpio(line, 'in', req.edge, { activeLow: req.activeLow }))
      if (!made.ok) return made
      const gpio = made.value
      const ops = lineOps(gpio, line, req.pin)
      // onoff ignores configuration errors on a line that was already exported: check it took.
      let direction = ''
      try {
        direction = readFileSync(`${ROOT}/gpio${line}/direction`, 'utf8').trim()
      } catch (e) {
        ops.release()
        return err(gpioError(e, { op: 'read', path: `${ROOT}/gpio${line}/direction`, pin: req.pin }))
      }
      if (direction !== 'in') {
        ops.release()
        return err({ code: 'EGPIO_BUSY', message: `pin ${req.pin} (line ${line}) stays "${direction}" after setting it to "in": something else drives it` })
      }
      let listener: ((e: Error | null | undefined, v: Level) => void) | undefined
      return ok({
        line,
        ...ops,
        watch(onLevel, onError): Result<void, GpioError> {
          if (listener !== undefined) return ok(undefined)
          const cb = (e: Error | null | undefined, v: Level): void => {
            if (e) onError(gpioError(e, { op: 'read', path: `${ROOT}/gpio${line}/value`, pin: req.pin }))
            else onLevel(v)
          }
          try {
            gpio.watch(cb)
            listener = cb
            return ok(undefined)
          } catch (e) {
            try {
              gpio.unwatch(cb)
            } catch {
              // see release()
            }
            return err(gpioError(e, { op: 'watch', path: `${ROOT}/gpio${line}/value`, pin: req.pin }))
          }
        },
        unwatch(): void {
          if (listener === undefined) return
          const cb = listener
          listener = undefined
          try {
            gpio.unwatch(cb)
          } catch {
            // nothing was armed
          }
        },
      })
    },

    async openOutput(req: OutputRequest): Promise<Result<GpioOutputLine, GpioError>> {
      const exported = await exportLine(req)
      if (!exported.ok) return exported
      const line = exported.value
      // "high"/"low" set direction and the raw (physical) level together: no glitch at start.
      const physical = req.activeLow ? 1 - req.initial : req.initial
      const made = construct(line, req.pin, () =>
        new Gpio(line, physical === 1 ? 'high' : 'low', 'none', { activeLow: req.activeLow }),
      )
      if (!made.ok) return made
      const gpio = made.value
      return ok({
        line,
        ...lineOps(gpio, line, req.pin),
        write(level: Level): Result<void, GpioError> {
          try {
            gpio.writeSync(level)
            return ok(undefined)
          } catch (e) {
            return err(gpioError(e, { op: 'write', path: `${ROOT}/gpio${line}/value`, pin: req.pin }))
          }
        },
      })
    },
  }
}
