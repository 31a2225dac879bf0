// The shape of a device mapping file (one device per JSON file in the devices directory) after
// validation against device/schemas/*.json and with defaults filled in. The loader produces these;
// the bridges consume them.

export interface PublishOptions {
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  /** Publish a field only when its value differs from the last one published. */
  readonly onChange: boolean
  /** At most one publish per field per this many ms (0: no limit); the newest value wins. */
  readonly minIntervalMs: number
}

/** How a raw field value becomes the published one: value * scale + offset, with a unit. */
export interface FieldMapping {
  readonly scale: number
  readonly offset: number
  readonly unit: string | undefined
  /** Decimal places to round to after scaling (undefined: as computed). */
  readonly decimals: number | undefined
}

interface DeviceBase {
  /** The device id: letters, digits, `-`, `_`; the file name without `.json` unless given. */
  readonly name: string
  /** The account whose namespace the device publishes in, and whose ACL applies. */
  readonly account: string
  readonly enabled: boolean
  /** The file it came from, for messages. */
  readonly file: string
}

export type SerialFraming =
  /** Text lines; each line is one reading of field `field` (default "value"). */
  | { readonly type: 'lines'; readonly delimiter: string; readonly field: string }
  /** Text lines split on `separator` into the named `fields` in order. */
  | { readonly type: 'delimited'; readonly delimiter: string; readonly separator: string; readonly fields: readonly string[] }
  /** Text lines matched by `pattern`; its named groups are the fields. Lines that do not match are rejected. */
  | { readonly type: 'regex'; readonly delimiter: string; readonly pattern: string }
  /** One JSON object per line; its (top-level, scalar) properties are the fields. */
  | { readonly type: 'json'; readonly delimiter: string }
  /** Fixed-length binary frames, optionally after a sync header, with a field map. */
  | {
      readonly type: 'binary'
      readonly length: number
      /** Hex bytes each frame starts with (e.g. "aa55"); frames are re-synchronised on it. */
      readonly header: string | undefined
      readonly fields: readonly BinaryField[]
    }

export interface BinaryField {
  readonly name: string
  readonly offset: number
  readonly type: 'uint8' | 'int8' | 'uint16be' | 'uint16le' | 'int16be' | 'int16le' | 'uint32be' | 'uint32le' | 'int32be' | 'int32le' | 'floatbe' | 'floatle'
}

/** Bytes each binary field type takes. */
export const BINARY_FIELD_SIZE: Readonly<Record<BinaryField['type'], number>> = {
  uint8: 1,
  int8: 1,
  uint16be: 2,
  uint16le: 2,
  int16be: 2,
  int16le: 2,
  uint32be: 4,
  uint32le: 4,
  int32be: 4,
  int32le: 4,
  floatbe: 4,
  floatle: 4,
}

export interface SerialDevice extends DeviceBase {
  readonly kind: 'serial'
  /** Prefer /dev/serial/by-id/...: USB adapters re-enumerate (ttyUSB0 -> ttyUSB1). */
  readonly path: string
  readonly baudRate: number
  readonly dataBits: 5 | 6 | 7 | 8
  readonly parity: 'none' | 'even' | 'odd'
  readonly stopBits: 1 | 2
  readonly framing: SerialFraming
  /** Topic template; `{device}`, `{field}`, `{account}` are filled. Default /{account}/sensors/{device}/{field}. */
  readonly topic: string
  /** value: the number or string alone; json: {"value", "unit", "at"}. */
  readonly payload: 'value' | 'json'
  readonly fields: Readonly<Record<string, FieldMapping>>
  readonly publish: PublishOptions
  /** Payloads published here (by clients allowed to) are written to the port. */
  readonly command: { readonly topic: string; readonly append: string; readonly encoding: 'utf8' | 'hex' } | undefined
  readonly reconnect: { readonly initialMs: number; readonly maxMs: number }
}

export interface GpioInput {
  readonly name: string
  /** The board's GPIO number (BCM on a Pi); the kernel number adds the gpiochip base. */
  readonly pin: number
  readonly edge: 'rising' | 'falling' | 'both'
  readonly debounceMs: number
  readonly activeLow: boolean
  /** Default /{account}/sensors/{device}/{name}. */
  readonly topic: string
}

export interface GpioOutput {
  readonly name: string
  readonly pin: number
  readonly activeLow: boolean
  /** The level set at start (and published), 0 or 1. */
  readonly initial: 0 | 1
  /** Follows /{account}/actuators/{name}/set (payload 0/1, on/off, true/false); state on .../state, retained. */
  readonly topic: string
}

export interface GpioDevice extends DeviceBase {
  readonly kind: 'gpio'
  /** A board profile name from device/boards (or the devices directory); default: the configured board. */
  readonly board: string | undefined
  readonly inputs: readonly GpioInput[]
  readonly outputs: readonly GpioOutput[]
  readonly publish: PublishOptions
}

export interface OneWireDevice extends DeviceBase {
  readonly kind: 'onewire'
  /** Where the w1 bus devices are; /sys/bus/w1/devices by default (tests use fixture trees). */
  readonly root: string
  readonly intervalMs: number
  /** Sensors by id (e.g. 28-000005e2fdc3) with a name; empty: every DS18B20 (28-*) found, named by id. */
  readonly sensors: readonly { readonly id: string; readonly name: string }[]
  /** Default /{account}/sensors/{device}/{name}. */
  readonly topic: string
  readonly payload: 'value' | 'json'
  readonly publish: PublishOptions
}

export type DeviceConfig = SerialDevice | GpioDevice | OneWireDevice

/** A board profile (device/boards/*.json). */
export interface BoardProfile {
  readonly name: string
  readonly description: string
  readonly gpio:
    | {
        /** gpiochip labels of the header's controller, tried in order (the base is read from sysfs). */
        readonly chipLabels: readonly string[]
        /** Usable GPIO numbers on the header. */
        readonly pins: readonly number[]
      }
    | undefined
  /** The board's own UART(s), e.g. /dev/serial0. */
  readonly serial: readonly string[]
  readonly onewire: { readonly root: string } | undefined
}
