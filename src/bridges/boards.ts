// Board profiles (device/boards/*.json and a boards/ folder of the devices directory) and the
// guess of which board perch runs on.
import { readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describeError } from '../core/errors.js'
import { compileSchema, type Validator } from '../core/schema.js'
import type { BoardProfile } from './device-config.js'

/** One problem in one file: `key` is the dotted path of the offending value ("(root)" for the whole file). */
export interface DeviceFileError {
  readonly file: string
  readonly key: string
  readonly reason: string
}

export function formatFileError(e: DeviceFileError): string {
  return `${e.file}: ${e.key}: ${e.reason}`
}

/** The folder with the bundled device/ tree (schemas, boards, examples), from src/ and from dist/. */
export function bundledDeviceDir(): string {
  return fileURLToPath(new URL('../../device', import.meta.url))
}

export const GENERIC_BOARD = 'generic-x86'

/** The profile for a /proc/device-tree/model text; generic-x86 for anything not recognised. */
export function boardForModel(model: string | undefined): string {
  const m = (model ?? '').replace(/\0/g, '').trim()
  if (m.startsWith('Raspberry Pi Zero 2 W')) return 'raspberry-pi-zero-2-w'
  // "Raspberry Pi 5 Model B" and "Raspberry Pi 500"; "Raspberry Pi 4 Model B" and "Raspberry Pi 400".
  if (m.startsWith('Raspberry Pi 5')) return 'raspberry-pi-5'
  if (m.startsWith('Raspberry Pi 4') || m.startsWith('Raspberry Pi Compute Module 4')) return 'raspberry-pi-4'
  return GENERIC_BOARD
}

/** Reads the model from the device tree (absent on PCs) and maps it to a profile name. */
export function detectBoard(modelFile = '/proc/device-tree/model'): { board: string; model: string | undefined } {
  let model: string | undefined
  try {
    model = readFileSync(modelFile, 'utf8').replace(/\0/g, '').trim()
  } catch {
    model = undefined
  }
  return { board: boardForModel(model), model }
}

/** Parses a JSON file; a failure is a DeviceFileError naming the file. */
export function readJsonFile(file: string): { ok: true; value: unknown } | { ok: false; error: DeviceFileError } {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    return { ok: false, error: { file, key: '(root)', reason: `cannot read: ${describeError(e)}` } }
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown }
  } catch (e) {
    return { ok: false, error: { file, key: '(root)', reason: `not valid JSON: ${describeError(e)}` } }
  }
}

/** Turns the schema wrapper's "a.b: message" lines into keyed errors; a missing property becomes its own key. */
export function schemaErrors(file: string, lines: readonly string[]): DeviceFileError[] {
  return lines.map((line) => {
    const cut = line.indexOf(': ')
    const at = cut < 0 ? '(root)' : line.slice(0, cut)
    const message = cut < 0 ? line : line.slice(cut + 2)
    const missing = /^must have required property '(.+)'$/.exec(message)
    if (missing?.[1] !== undefined) return { file, key: at === '(root)' ? missing[1] : `${at}.${missing[1]}`, reason: 'is required' }
    return { file, key: at, reason: message }
  })
}

export function loadSchemaFile(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(bundledDeviceDir(), 'schemas', name), 'utf8')) as Record<string, unknown>
}

interface BoardFile {
  description: string
  gpio?: { chipLabels: string[]; pins: number[] }
  serial: string[]
  onewire?: { root: string }
}

/** Board profiles by name from these folders in order (a later folder's profile replaces an earlier one). Missing folders are skipped. */
export function loadBoards(dirs: readonly string[]): { boards: Map<string, BoardProfile>; errors: DeviceFileError[] } {
  const validate: Validator<BoardFile> = compileSchema<BoardFile>(loadSchemaFile('board.schema.json'))
  const boards = new Map<string, BoardProfile>()
  const errors: DeviceFileError[] = []
  for (const dir of dirs) {
    for (const file of jsonFiles(dir)) {
      const read = readJsonFile(file)
      if (!read.ok) {
        errors.push(read.error)
        continue
      }
      const checked = validate(read.value)
      if (!checked.ok) {
        errors.push(...schemaErrors(file, checked.error))
        continue
      }
      const b = checked.value
      const name = basename(file, '.json')
      boards.set(name, {
        name,
        description: b.description,
        gpio: b.gpio === undefined ? undefined : { chipLabels: [...b.gpio.chipLabels], pins: [...b.gpio.pins] },
        serial: [...b.serial],
        onewire: b.onewire === undefined ? undefined : { root: b.onewire.root },
      })
    }
  }
  return { boards, errors }
}

/** The *.json files directly inside `dir`, sorted; none when it does not exist. */
export function jsonFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.json') && !e.name.startsWith('.'))
      .map((e) => join(dir, e.name))
      .sort()
  } catch {
    return []
  }
}
