// Streaming framers: bytes from the port in any chunking -> records of raw field values. Each
// framer carries a partial frame across chunks and holds at most a bounded amount of input.
import { ConfigError, describeError } from '../../core/errors.js'
import { err, ok, type Result } from '../../core/result.js'
import { BINARY_FIELD_SIZE, type BinaryField, type SerialFraming } from '../device-config.js'

export type RawValue = string | number | boolean
export type RawRecord = Readonly<Record<string, RawValue>>

export interface FrameOutput {
  readonly records: RawRecord[]
  /** One reason per rejected frame (unparsable, unmatched, oversize, garbage before a header). */
  readonly rejected: string[]
}

export interface Framer {
  push(chunk: Buffer): FrameOutput
  /** Forgets any partial frame (after a reconnect the next bytes come from a new device). */
  reset(): void
}

/** Text frames longer than this are dropped (and counted) rather than buffered. */
export const DEFAULT_MAX_FRAME = 64 * 1024

export function createFramer(framing: SerialFraming, maxFrame = DEFAULT_MAX_FRAME): Result<Framer, ConfigError> {
  switch (framing.type) {
    case 'lines': {
      const field = framing.field
      return textFramer(framing.delimiter, maxFrame, (line) => ok({ [field]: line }))
    }
    case 'delimited': {
      const { separator, fields } = framing
      if (separator === '') return err(new ConfigError('delimited framing needs a non-empty separator'))
      return textFramer(framing.delimiter, maxFrame, (line) => {
        const parts = line.split(separator)
        if (parts.length !== fields.length) return err(`expected ${fields.length} fields, got ${parts.length}`)
        const rec: Record<string, RawValue> = {}
        fields.forEach((name, i) => {
          rec[name] = (parts[i] ?? '').trim()
        })
        return ok(rec)
      })
    }
    case 'regex': {
      let re: RegExp
      try {
        re = new RegExp(framing.pattern)
      } catch (e) {
        return err(new ConfigError(`invalid regex framing pattern: ${describeError(e)}`))
      }
      return textFramer(framing.delimiter, maxFrame, (line) => {
        const groups = re.exec(line)?.groups
        if (groups === undefined) return err('line does not match the pattern')
        const rec: Record<string, RawValue> = {}
        for (const [k, v] of Object.entries(groups)) if (v !== undefined) rec[k] = v
        if (Object.keys(rec).length === 0) return err('no named group matched')
        return ok(rec)
      })
    }
    case 'json':
      return textFramer(framing.delimiter, maxFrame, parseJsonRecord)
    case 'binary':
      return binaryFramer(framing.length, framing.header, framing.fields)
  }
}

function parseJsonRecord(line: string): Result<RawRecord, string> {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch (e) {
    return err(`invalid JSON: ${describeError(e)}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return err('not a JSON object')
  const rec: Record<string, RawValue> = {}
  for (const [k, x] of Object.entries(v)) {
    if (typeof x === 'string' || typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x))) rec[k] = x
  }
  if (Object.keys(rec).length === 0) return err('no scalar properties')
  return ok(rec)
}

/** Splits on `delimiter`; trims a trailing CR for "\n"-delimited input; skips empty lines. */
function textFramer(delimiter: string, maxFrame: number, parse: (line: string) => Result<RawRecord, string>): Result<Framer, ConfigError> {
  if (delimiter === '') return err(new ConfigError('text framing needs a non-empty delimiter'))
  const delim = Buffer.from(delimiter, 'utf8')
  let buf: Buffer = Buffer.alloc(0)
  /** Inside an oversize line: drop bytes until the next delimiter. */
  let skipping = false
  const framer: Framer = {
    reset() {
      buf = Buffer.alloc(0)
      skipping = false
    },
    push(chunk) {
      const records: RawRecord[] = []
      const rejected: string[] = []
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      let start = 0
      for (;;) {
        const at = buf.indexOf(delim, start)
        if (at < 0) break
        const end = at
        const next = at + delim.length
        if (skipping) {
          skipping = false
        } else if (end - start > maxFrame) {
          rejected.push(`frame longer than ${maxFrame} bytes`)
        } else {
          let line = buf.toString('utf8', start, end)
          if (delimiter === '\n' && line.endsWith('\r')) line = line.slice(0, -1)
          if (line.trim() !== '') {
            const r = parse(line)
            if (r.ok) records.push(r.value)
            else rejected.push(r.error)
          }
        }
        start = next
      }
      buf = buf.subarray(start)
      if (buf.length > maxFrame) {
        // No delimiter within the limit: drop what we hold and the rest of this frame.
        if (!skipping) rejected.push(`frame longer than ${maxFrame} bytes`)
        skipping = true
        // Keep a possible partial delimiter at the end.
        buf = Buffer.from(buf.subarray(buf.length - (delim.length - 1)))
      } else {
        buf = Buffer.from(buf)
      }
      return { records, rejected }
    },
  }
  return ok(framer)
}


export function readBinaryField(frame: Buffer, f: BinaryField): number {
  const o = f.offset
  switch (f.type) {
    case 'uint8':
      return frame.readUInt8(o)
    case 'int8':
      return frame.readInt8(o)
    case 'uint16be':
      return frame.readUInt16BE(o)
    case 'uint16le':
      return frame.readUInt16LE(o)
    case 'int16be':
      return frame.readInt16BE(o)
    case 'int16le':
      return frame.readInt16LE(o)
    case 'uint32be':
      return frame.readUInt32BE(o)
    case 'uint32le':
      return frame.readUInt32LE(o)
    case 'int32be':
      return frame.readInt32BE(o)
    case 'int32le':
      return frame.readInt32LE(o)
    case 'floatbe':
      return frame.readFloatBE(o)
    case 'floatle':
      return frame.readFloatLE(o)
  }
}

/**
 * Fixed-length frames. With a header, every frame must start with it: bytes before a header are
 * dropped (one rejection per run of garbage) and the framer re-synchronises on the next header.
 */
function binaryFramer(length: number, headerHex: string | undefined, fields: readonly BinaryField[]): Result<Framer, ConfigError> {
  if (!Number.isInteger(length) || length <= 0) return err(new ConfigError('binary framing needs a positive length'))
  let header = Buffer.alloc(0)
  if (headerHex !== undefined && headerHex !== '') {
    if (!/^([0-9a-fA-F]{2})+$/.test(headerHex)) return err(new ConfigError(`binary header is not hex: ${headerHex}`))
    header = Buffer.from(headerHex, 'hex')
    if (header.length > length) return err(new ConfigError('binary header is longer than the frame'))
  }
  for (const f of fields) {
    if (!Number.isInteger(f.offset) || f.offset < 0 || f.offset + BINARY_FIELD_SIZE[f.type] > length) {
      return err(new ConfigError(`binary field ${f.name} (${f.type} at ${f.offset}) does not fit a ${length}-byte frame`))
    }
  }
  let buf: Buffer = Buffer.alloc(0)
  const framer: Framer = {
    reset() {
      buf = Buffer.alloc(0)
    },
    push(chunk) {
      const records: RawRecord[] = []
      const rejected: string[] = []
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      let pos = 0
      for (;;) {
        if (header.length > 0) {
          const at = buf.indexOf(header, pos)
          if (at < 0) {
            // Keep only what could be the start of a header.
            const keep = Math.min(header.length - 1, buf.length - pos)
            if (buf.length - pos > keep) rejected.push('bytes without a frame header')
            pos = buf.length - keep
            break
          }
          if (at > pos) rejected.push(`${at - pos} bytes before a frame header`)
          pos = at
        }
        if (buf.length - pos < length) break
        const frame = buf.subarray(pos, pos + length)
        const rec: Record<string, RawValue> = {}
        for (const f of fields) rec[f.name] = readBinaryField(frame, f)
        records.push(rec)
        pos += length
      }
      buf = Buffer.from(buf.subarray(pos))
      return { records, rejected }
    },
  }
  return ok(framer)
}
