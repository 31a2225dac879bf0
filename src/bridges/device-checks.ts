// The checks a JSON schema cannot make: regular expressions that compile and name their
// fields, binary fields inside the frame, topics inside the account's namespace, GPIO pins on
// the board and used once, device names used once.
import { describeError } from '../core/errors.js'
import type { DeviceFileError } from './boards.js'
import { BINARY_FIELD_SIZE, type BoardProfile, type DeviceConfig, type GpioDevice } from './device-config.js'


/** The named groups of a pattern, or the reason it does not compile. */
export function regexGroups(pattern: string): { ok: true; groups: string[] } | { ok: false; reason: string } {
  let re: RegExp
  try {
    // The empty alternative matches '' and so lists every group name (all undefined).
    re = new RegExp(`(?:${pattern})|`)
  } catch (e) {
    return { ok: false, reason: `does not compile: ${describeError(e)}` }
  }
  return { ok: true, groups: Object.keys(re.exec('')?.groups ?? {}) }
}

/** Problems of one device on its own. */
export function checkDevice(d: DeviceConfig, boards: ReadonlyMap<string, BoardProfile>): DeviceFileError[] {
  const errors: DeviceFileError[] = []
  const problem = (key: string, reason: string): void => {
    errors.push({ file: d.file, key, reason })
  }
  const topic = (key: string, t: string, placeholders: readonly string[]): void => {
    const reason = topicProblem(t, d.account, placeholders)
    if (reason !== undefined) problem(key, reason)
  }
  switch (d.kind) {
    case 'serial': {
      const f = d.framing
      if (f.type === 'regex') {
        const r = regexGroups(f.pattern)
        if (!r.ok) problem('framing.pattern', r.reason)
        else if (r.groups.length === 0) problem('framing.pattern', 'has no named groups: name each field, e.g. (?<temperature>-?[0-9.]+)')
      }
      if (f.type === 'delimited' && f.fields.every((x) => x === '')) problem('framing.fields', 'names no field')
      if (f.type === 'binary') {
        const headerBytes = (f.header?.length ?? 0) / 2
        if (headerBytes >= f.length) problem('framing.header', `is ${headerBytes} bytes, as long as the ${f.length}-byte frame or longer`)
        const seen = new Set<string>()
        for (const [i, x] of f.fields.entries()) {
          const size = BINARY_FIELD_SIZE[x.type] ?? 1
          if (x.offset + size > f.length) {
            problem(`framing.fields.${i}.offset`, `${x.type} at offset ${x.offset} ends at byte ${x.offset + size}, beyond the ${f.length}-byte frame`)
          }
          if (seen.has(x.name)) problem(`framing.fields.${i}.name`, `"${x.name}" is used twice`)
          seen.add(x.name)
        }
      }
      topic('topic', d.topic, ['field'])
      if (d.command !== undefined) {
        topic('command.topic', d.command.topic, [])
        if (d.command.encoding === 'hex' && !/^([0-9a-fA-F]{2})*$/.test(d.command.append)) problem('command.append', 'must be hex digits (pairs) with encoding hex')
      }
      if (d.reconnect.initialMs > d.reconnect.maxMs) problem('reconnect.initialMs', `${d.reconnect.initialMs} is more than maxMs ${d.reconnect.maxMs}`)
      break
    }
    case 'gpio':
      errors.push(...checkGpio(d, boards))
      break
    case 'onewire': {
      topic('topic', d.topic, ['name'])
      const names = new Set<string>()
      const ids = new Set<string>()
      for (const [i, s] of d.sensors.entries()) {
        if (names.has(s.name)) problem(`sensors.${i}.name`, `"${s.name}" is used twice`)
        if (ids.has(s.id)) problem(`sensors.${i}.id`, `${s.id} is listed twice`)
        names.add(s.name)
        ids.add(s.id)
      }
      break
    }
  }
  return errors
}

function checkGpio(d: GpioDevice, boards: ReadonlyMap<string, BoardProfile>): DeviceFileError[] {
  const errors: DeviceFileError[] = []
  const problem = (key: string, reason: string): void => {
    errors.push({ file: d.file, key, reason })
  }
  if (d.inputs.length === 0 && d.outputs.length === 0) problem('(root)', 'a gpio device needs "inputs" or "outputs"')
  const boardName = d.board ?? ''
  const board = boards.get(boardName)
  if (board === undefined) problem('board', `unknown board "${boardName}" (known: ${[...boards.keys()].sort().join(', ')})`)
  else if (board.gpio === undefined) problem('board', `board "${boardName}" has no GPIO header`)
  const pins = new Map<number, string>()
  const names = new Set<string>()
  const lines = [...d.inputs.map((l, i) => ({ key: `inputs.${i}`, line: l })), ...d.outputs.map((l, i) => ({ key: `outputs.${i}`, line: l }))]
  for (const { key, line } of lines) {
    if (board?.gpio !== undefined && !board.gpio.pins.includes(line.pin)) {
      problem(`${key}.pin`, `GPIO ${line.pin} is not on the ${boardName} header (usable: ${board.gpio.pins.join(', ')})`)
    }
    const other = pins.get(line.pin)
    if (other !== undefined) problem(`${key}.pin`, `GPIO ${line.pin} is already used by ${other}`)
    pins.set(line.pin, `"${line.name}"`)
    if (names.has(line.name)) problem(`${key}.name`, `"${line.name}" is used twice`)
    names.add(line.name)
    const reason = topicProblem(line.topic, d.account, [])
    if (reason !== undefined) problem(`${key}.topic`, reason)
  }
  return errors
}

/** Why a (partly filled) topic cannot be used by `account`, or undefined. */
export function topicProblem(topic: string, account: string, placeholders: readonly string[]): string | undefined {
  if (!topic.startsWith(`/${account}/`) || topic.length === account.length + 2) {
    return `"${topic}" is outside the account's namespace /${account}/ (a device publishes as its account)`
  }
  if (/[#+]/.test(topic)) return `"${topic}" contains a wildcard`
  for (const m of topic.matchAll(/\{([a-zA-Z0-9_]+)\}/g)) {
    if (!placeholders.includes(m[1] ?? '')) {
      const allowed = ['account', 'device', ...placeholders].map((p) => `{${p}}`).join(', ')
      return `"${topic}" has the unknown placeholder {${m[1] ?? ''}} (allowed here: ${allowed})`
    }
  }
  if (topic.split('/').some((level, i) => i > 0 && level === '')) return `"${topic}" has an empty level`
  return undefined
}

/** Problems between devices: names used twice, serial ports opened twice, GPIO pins claimed twice. The first file keeps it. */
export function checkSet(devices: readonly DeviceConfig[], boards: ReadonlyMap<string, BoardProfile>): DeviceFileError[] {
  const errors: DeviceFileError[] = []
  const names = new Map<string, string>()
  const paths = new Map<string, string>()
  const pins = new Map<string, string>()
  for (const d of devices) {
    const first = names.get(d.name)
    if (first !== undefined) {
      errors.push({ file: d.file, key: 'name', reason: `device name "${d.name}" is already used by ${first}` })
      continue
    }
    names.set(d.name, d.file)
    if (!d.enabled) continue
    if (d.kind === 'serial') {
      const other = paths.get(d.path)
      if (other !== undefined) errors.push({ file: d.file, key: 'path', reason: `${d.path} is already opened by ${other}` })
      else paths.set(d.path, `device "${d.name}" (${d.file})`)
    }
    if (d.kind === 'gpio' && boards.has(d.board ?? '')) {
      const lines = [...d.inputs.map((l, i) => ({ key: `inputs.${i}.pin`, pin: l.pin })), ...d.outputs.map((l, i) => ({ key: `outputs.${i}.pin`, pin: l.pin }))]
      const mine: [string, string][] = []
      for (const { key, pin } of lines) {
        const other = pins.get(`${d.board ?? ''}:${pin}`)
        if (other !== undefined) errors.push({ file: d.file, key, reason: `GPIO ${pin} is already used by ${other}` })
        mine.push([`${d.board ?? ''}:${pin}`, `device "${d.name}" (${d.file})`])
      }
      if (!errors.some((e) => e.file === d.file)) for (const [k, v] of mine) pins.set(k, v)
    }
  }
  return errors
}
