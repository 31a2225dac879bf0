// Reads device mapping files (one device per JSON file), validates them against
// device/schemas/device.schema.json, fills every default and cross-checks the set: the result is
// the DeviceConfig[] the bridges consume, plus one keyed error per problem. A bad file never
// stops the good ones.
import { existsSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { deferredSchema, type Validator } from '../core/schema.js'
import { bundledDeviceDir, type DeviceFileError, jsonFiles, loadBoards, loadSchemaFile, readJsonFile, schemaErrors } from './boards.js'
import { checkDevice, checkSet } from './device-checks.js'
import type { BoardProfile, DeviceConfig, GpioDevice, OneWireDevice, PublishOptions, SerialDevice, SerialFraming } from './device-config.js'

export type { DeviceFileError } from './boards.js'

export interface LoadOptions {
  /** The board GPIO devices use when they name none (the configured or detected one). */
  readonly board: string
  /** More folders with board profiles, after the bundled device/boards. */
  readonly boardDirs?: readonly string[]
}

export interface LoadResult {
  /** The valid devices, defaults filled, in file-name order. */
  readonly devices: DeviceConfig[]
  /** Every problem; a device with one is not in `devices`. */
  readonly errors: DeviceFileError[]
  /** The board profiles; none are read when there are no device files. */
  readonly boards: ReadonlyMap<string, BoardProfile>
  /** The files read, good and bad. */
  readonly files: readonly string[]
}

/**
 * Loads every *.json in `dir` (its boards/ subfolder holds extra board profiles). A missing
 * directory is no error: there are no devices.
 */
export function loadDevicesDir(dir: string, options: LoadOptions): LoadResult {
  return loadDeviceFiles(jsonFiles(dir), { ...options, boardDirs: [...(options.boardDirs ?? []), join(dir, 'boards')] })
}

/** Loads these files (and folders, each as by loadDevicesDir) as one set, cross-checked together. */
export function loadDevicePaths(paths: readonly string[], options: LoadOptions): LoadResult {
  const files: string[] = []
  const boardDirs = [...(options.boardDirs ?? [])]
  const missing: DeviceFileError[] = []
  for (const p of paths) {
    if (!existsSync(p)) missing.push({ file: p, key: '(root)', reason: 'no such file or directory' })
    else if (statSync(p).isDirectory()) {
      files.push(...jsonFiles(p))
      boardDirs.push(join(p, 'boards'))
    } else files.push(p)
  }
  const r = loadDeviceFiles(files, { ...options, boardDirs })
  return { ...r, errors: [...missing, ...r.errors] }
}

export function loadDeviceFiles(files: readonly string[], options: LoadOptions): LoadResult {
  // Board profiles serve only to check devices against; with none, their schema is not compiled
  // (a compile's memory stays with the process) and a bad profile waits until a device is added.
  if (files.length === 0) return { devices: [], errors: [], boards: new Map(), files }
  const { boards, errors } = loadBoards([join(bundledDeviceDir(), 'boards'), ...(options.boardDirs ?? [])])
  const validators = kindValidators()
  const candidates: DeviceConfig[] = []
  for (const file of files) {
    const read = readJsonFile(file)
    if (!read.ok) {
      errors.push(read.error)
      continue
    }
    const parsed = parseDevice(file, read.value, validators, options.board)
    if (!parsed.ok) {
      errors.push(...parsed.errors)
      continue
    }
    const problems = checkDevice(parsed.device, boards)
    if (problems.length > 0) errors.push(...problems)
    else candidates.push(parsed.device)
  }
  const rejected = checkSet(candidates, boards)
  errors.push(...rejected)
  const bad = new Set(rejected.map((e) => e.file))
  return { devices: candidates.filter((d) => !bad.has(d.file)), errors, boards, files }
}

// ---------------------------------------------------------------------------------------------
// One file: schema, then defaults

type Kind = DeviceConfig['kind']
const KINDS: readonly Kind[] = ['serial', 'gpio', 'onewire']

/** One validator per kind, each compiled only when a file of that kind is read. */
function kindValidators(): Record<Kind, Validator<RawDevice>> {
  let schema: Record<string, unknown> | undefined
  const of = (kind: Kind): Validator<RawDevice> =>
    deferredSchema<RawDevice>(() => {
      schema ??= loadSchemaFile('device.schema.json')
      return { $schema: schema.$schema, definitions: schema.definitions, $ref: `#/definitions/${kind}` }
    })
  return { serial: of('serial'), gpio: of('gpio'), onewire: of('onewire') }
}

type Parsed = { ok: true; device: DeviceConfig } | { ok: false; errors: DeviceFileError[] }

function parseDevice(file: string, input: unknown, validators: Record<Kind, Validator<RawDevice>>, board: string): Parsed {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { ok: false, errors: [{ file, key: '(root)', reason: 'must be a JSON object' }] }
  const kind = (input as Record<string, unknown>).kind
  if (kind === undefined) return { ok: false, errors: [{ file, key: 'kind', reason: `is required (one of ${KINDS.join(', ')})` }] }
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    return { ok: false, errors: [{ file, key: 'kind', reason: `must be one of ${KINDS.join(', ')}, not ${JSON.stringify(kind)}` }] }
  }
  const checked = validators[kind as Kind](input)
  if (!checked.ok) return { ok: false, errors: schemaErrors(file, checked.error) }
  const raw = checked.value
  const name = raw.name ?? basename(file, '.json')
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    return { ok: false, errors: [{ file, key: 'name', reason: `the file name "${name}" is no device name (letters, digits, - and _): rename the file or give "name"` }] }
  }
  const base = { name, account: raw.account, enabled: raw.enabled ?? true, file }
  // {account} and {device} are known here; {field} (serial) and {name} (1-Wire) are filled by the bridge.
  const topic = (t: string, extra: Record<string, string> = {}): string => fill(t, { account: raw.account, device: name, ...extra })
  if (kind === 'serial') return { ok: true, device: serialDevice(raw as RawSerial, base, topic) }
  if (kind === 'gpio') return { ok: true, device: gpioDevice(raw as RawGpio, base, board, topic) }
  return { ok: true, device: oneWireDevice(raw as RawOneWire, base, topic) }
}

function fill(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([a-zA-Z0-9_]+)\}/g, (whole, key: string) => values[key] ?? whole)
}

interface RawDevice {
  kind: Kind
  name?: string
  account: string
  enabled?: boolean
}

interface RawPublish {
  qos?: 0 | 1 | 2
  retain?: boolean
  onChange?: boolean
  minIntervalMs?: number
}

interface RawSerial extends RawDevice {
  path: string
  baudRate?: number
  dataBits?: 5 | 6 | 7 | 8
  parity?: 'none' | 'even' | 'odd'
  stopBits?: 1 | 2
  framing?: RawFraming
  topic?: string
  payload?: 'value' | 'json'
  fields?: Record<string, { scale?: number; offset?: number; unit?: string; decimals?: number }>
  publish?: RawPublish
  command?: { topic?: string; append?: string; encoding?: 'utf8' | 'hex' }
  reconnect?: { initialMs?: number; maxMs?: number }
}

type RawFraming =
  | { type: 'lines'; delimiter?: string; field?: string }
  | { type: 'delimited'; delimiter?: string; separator?: string; fields: string[] }
  | { type: 'regex'; delimiter?: string; pattern: string }
  | { type: 'json'; delimiter?: string }
  | { type: 'binary'; length: number; header?: string; fields: { name: string; offset: number; type: SerialBinaryType }[] }

type SerialBinaryType = Extract<SerialFraming, { type: 'binary' }>['fields'][number]['type']

interface RawGpio extends RawDevice {
  board?: string
  inputs?: { name: string; pin: number; edge?: 'rising' | 'falling' | 'both'; debounceMs?: number; activeLow?: boolean; topic?: string }[]
  outputs?: { name: string; pin: number; activeLow?: boolean; initial?: 0 | 1; topic?: string }[]
  publish?: RawPublish
}

interface RawOneWire extends RawDevice {
  root?: string
  intervalMs?: number
  sensors?: { id: string; name: string }[]
  topic?: string
  payload?: 'value' | 'json'
  publish?: RawPublish
}

type Base = Pick<SerialDevice, 'name' | 'account' | 'enabled' | 'file'>
type Topic = (template: string, extra?: Record<string, string>) => string

export const DEFAULT_DELIMITER = '\n'
export const DEFAULT_W1_ROOT = '/sys/bus/w1/devices'

function publishOptions(p: RawPublish | undefined): PublishOptions {
  return { qos: p?.qos ?? 0, retain: p?.retain ?? false, onChange: p?.onChange ?? false, minIntervalMs: p?.minIntervalMs ?? 0 }
}

function framing(f: RawFraming | undefined): SerialFraming {
  if (f === undefined) return { type: 'lines', delimiter: DEFAULT_DELIMITER, field: 'value' }
  const delimiter = f.type === 'binary' ? '' : (f.delimiter ?? DEFAULT_DELIMITER)
  switch (f.type) {
    case 'lines':
      return { type: 'lines', delimiter, field: f.field ?? 'value' }
    case 'delimited':
      return { type: 'delimited', delimiter, separator: f.separator ?? ',', fields: [...f.fields] }
    case 'regex':
      return { type: 'regex', delimiter, pattern: f.pattern }
    case 'json':
      return { type: 'json', delimiter }
    case 'binary':
      return { type: 'binary', length: f.length, header: f.header?.toLowerCase(), fields: f.fields.map((x) => ({ name: x.name, offset: x.offset, type: x.type })) }
  }
}

function serialDevice(raw: RawSerial, base: Base, topic: Topic): SerialDevice {
  const fields: Record<string, SerialDevice['fields'][string]> = {}
  for (const [name, m] of Object.entries(raw.fields ?? {})) {
    fields[name] = { scale: m.scale ?? 1, offset: m.offset ?? 0, unit: m.unit, decimals: m.decimals }
  }
  const c = raw.command
  const encoding = c?.encoding ?? 'utf8'
  return {
    ...base,
    kind: 'serial',
    path: raw.path,
    baudRate: raw.baudRate ?? 9600,
    dataBits: raw.dataBits ?? 8,
    parity: raw.parity ?? 'none',
    stopBits: raw.stopBits ?? 1,
    framing: framing(raw.framing),
    topic: topic(raw.topic ?? '/{account}/sensors/{device}/{field}'),
    payload: raw.payload ?? 'value',
    fields,
    publish: publishOptions(raw.publish),
    command:
      c === undefined
        ? undefined
        : { topic: topic(c.topic ?? '/{account}/actuators/{device}/write'), append: c.append ?? (encoding === 'utf8' ? '\n' : ''), encoding },
    reconnect: { initialMs: raw.reconnect?.initialMs ?? 100, maxMs: raw.reconnect?.maxMs ?? 10_000 },
  }
}

function gpioDevice(raw: RawGpio, base: Base, board: string, topic: Topic): GpioDevice {
  return {
    ...base,
    kind: 'gpio',
    board: raw.board ?? board,
    inputs: (raw.inputs ?? []).map((i) => ({
      name: i.name,
      pin: i.pin,
      edge: i.edge ?? 'both',
      debounceMs: i.debounceMs ?? 0,
      activeLow: i.activeLow ?? false,
      topic: topic(i.topic ?? '/{account}/sensors/{device}/{name}', { name: i.name }),
    })),
    outputs: (raw.outputs ?? []).map((o) => ({
      name: o.name,
      pin: o.pin,
      activeLow: o.activeLow ?? false,
      initial: o.initial ?? 0,
      topic: topic(o.topic ?? '/{account}/actuators/{name}/set', { name: o.name }),
    })),
    publish: publishOptions(raw.publish),
  }
}

function oneWireDevice(raw: RawOneWire, base: Base, topic: Topic): OneWireDevice {
  return {
    ...base,
    kind: 'onewire',
    root: raw.root ?? DEFAULT_W1_ROOT,
    intervalMs: raw.intervalMs ?? 10_000,
    sensors: (raw.sensors ?? []).map((s) => ({ id: s.id.toLowerCase(), name: s.name })),
    topic: topic(raw.topic ?? '/{account}/sensors/{device}/{name}'),
    payload: raw.payload ?? 'value',
    publish: publishOptions(raw.publish),
  }
}

/** One line about a valid device, for `perch devices check`. */
export function describeDevice(d: DeviceConfig): string {
  const off = d.enabled ? '' : ' (disabled)'
  switch (d.kind) {
    case 'serial': {
      const f = d.framing
      const framingText = f.type === 'binary' ? `binary frames of ${f.length} bytes` : `${f.type} framing`
      return `serial "${d.name}" as ${d.account}: ${d.path} at ${d.baudRate} baud, ${framingText} -> ${d.topic}${d.command === undefined ? '' : `, commands from ${d.command.topic}`}${off}`
    }
    case 'gpio': {
      const ins = d.inputs.map((i) => `${i.name} (pin ${i.pin}) -> ${i.topic}`)
      const outs = d.outputs.map((o) => `${o.name} (pin ${o.pin}) <- ${o.topic}`)
      return `gpio "${d.name}" as ${d.account} on ${d.board ?? '?'}: ${[...ins, ...outs].join(', ') || 'no lines'}${off}`
    }
    case 'onewire':
      return `onewire "${d.name}" as ${d.account}: ${d.sensors.length === 0 ? 'every DS18B20' : `${d.sensors.length} sensor(s)`} in ${d.root} every ${d.intervalMs / 1000} s -> ${d.topic}${off}`
  }
}
