// The GPIO port the bridge talks to. The sysfs backend (onoff) is the first implementation; a
// character-device backend can follow behind the same interface. Every call returns a Result: a
// backend never throws into the bridge, and its errors carry a stable code and a message that
// says what to do about it.
import type { Result } from '../../core/result.js'

export type Level = 0 | 1

export type GpioErrorCode =
  /** The process may not write the sysfs files (gpio group, udev rule). */
  | 'EGPIO_ACCESS'
  /** No /sys/class/gpio (kernel without CONFIG_GPIO_SYSFS, or not a GPIO board). */
  | 'EGPIO_NO_SYSFS'
  /** No gpiochip with any of the board's labels. */
  | 'EGPIO_NO_CHIP'
  /** The kernel refused the line number (wrong base, or not a line of that chip). */
  | 'EGPIO_INVALID_PIN'
  /** The line is held by a driver or another exporter. */
  | 'EGPIO_BUSY'
  /** Edge interrupts cannot be armed on this line (no EPOLLPRI, not a real gpiochip). */
  | 'EGPIO_EDGE_UNSUPPORTED'
  /** Any other failure reading or writing a line. */
  | 'EGPIO_IO'

export interface GpioError {
  readonly code: GpioErrorCode
  readonly message: string
}

/** The gpiochip a board's header lines live on; kernel line number = base + pin. */
export interface ChipInfo {
  /** The sysfs directory name, e.g. gpiochip512. */
  readonly chip: string
  readonly label: string
  readonly base: number
  readonly ngpio: number
}

export interface LineRequest {
  /** The board's GPIO number (BCM on a Pi). */
  readonly pin: number
  /** The chip's base; the kernel line is base + pin. */
  readonly base: number
  /** The level is inverted by the kernel (sysfs active_low): read and write see logical levels. */
  readonly activeLow: boolean
}

export interface InputRequest extends LineRequest {
  readonly edge: 'rising' | 'falling' | 'both'
}

export interface OutputRequest extends LineRequest {
  /** The logical level the line starts at (set together with the direction, without a glitch). */
  readonly initial: Level
}

interface Line {
  /** The kernel line number (base + pin). */
  readonly line: number
  /** The current logical level. */
  read(): Result<Level, GpioError>
  /** Unwatches, closes and unexports. Safe to call twice. */
  release(): Result<void, GpioError>
}

export interface GpioInputLine extends Line {
  /**
   * Calls `onLevel` with the (logical) level after each interrupt; `onError` when reading after
   * an interrupt fails. No debounce here: the bridge debounces.
   */
  watch(onLevel: (level: Level) => void, onError: (e: GpioError) => void): Result<void, GpioError>
  unwatch(): void
}

export interface GpioOutputLine extends Line {
  write(level: Level): Result<void, GpioError>
}

export interface GpioBackend {
  /** Resolves the chip of the first label (in order) that exists. */
  base(labels: readonly string[]): Promise<Result<ChipInfo, GpioError>>
  openInput(req: InputRequest): Promise<Result<GpioInputLine, GpioError>>
  openOutput(req: OutputRequest): Promise<Result<GpioOutputLine, GpioError>>
}

export const UDEV_HINT = 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", ACTION=="add", GROUP="gpio", MODE="0660"'

export type GpioOp = 'export' | 'unexport' | 'open' | 'read' | 'write' | 'watch' | 'list'

export interface ErrorContext {
  readonly op: GpioOp
  /** The file the failing call was about. */
  readonly path: string
  readonly pin?: number
  readonly base?: number
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code
  return typeof c === 'string' ? c : undefined
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** Maps an fs/onoff error to a GpioError whose message says what to check. */
export function gpioError(e: unknown, ctx: ErrorContext): GpioError {
  const code = codeOf(e)
  const msg = messageOf(e)
  const pinText = ctx.pin === undefined ? 'the pin' : `pin ${ctx.pin}`
  const lineText =
    ctx.pin !== undefined && ctx.base !== undefined ? ` (${ctx.base}+${ctx.pin}=${ctx.base + ctx.pin})` : ''
  if (ctx.op === 'watch' && (code === 'EPERM' || /operation not permitted/i.test(msg))) {
    // onoff's epoll error has no code; epoll refuses files that are not real gpiochip lines.
    return {
      code: 'EGPIO_EDGE_UNSUPPORTED',
      message: `edge interrupts cannot be armed on ${ctx.path}: not a real gpiochip line (${msg})`,
    }
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return {
      code: 'EGPIO_ACCESS',
      message: `permission denied on ${ctx.path}: run perch as a member of the gpio group (the systemd unit adds it) or add a udev rule: ${UDEV_HINT}`,
    }
  }
  if (code === 'ENOENT' && (ctx.op === 'export' || ctx.op === 'list')) {
    return {
      code: 'EGPIO_NO_SYSFS',
      message: `no sysfs GPIO interface: the kernel lacks CONFIG_GPIO_SYSFS (not a GPIO board?): ${ctx.path} does not exist`,
    }
  }
  if (code === 'EINVAL' && ctx.op === 'export') {
    return {
      code: 'EGPIO_INVALID_PIN',
      message: `${pinText} is not valid here: the kernel number is base+N${lineText}; check the board profile`,
    }
  }
  if (code === 'EBUSY' && ctx.op === 'export') {
    return {
      code: 'EGPIO_BUSY',
      message: `${pinText}${lineText} is busy: a driver (an overlay such as w1-gpio, i2c, spi) or another program holds it`,
    }
  }
  return { code: 'EGPIO_IO', message: `${ctx.op} ${ctx.path} failed: ${code === undefined ? '' : `${code} `}${msg}` }
}
