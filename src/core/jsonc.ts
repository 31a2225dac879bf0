import { err, ok, type Result } from './result.js'

/**
 * Blanks out `//` and `/* *\/` comments and trailing commas, leaving plain JSON. Every removed
 * character becomes a space and newlines stay, so JSON.parse positions still point into the
 * original text. The error names the line and column of an unterminated comment.
 */
export function stripJsonComments(text: string): Result<string, string> {
  const out = text.split('')
  // The last comma outside strings and comments, while only whitespace and comments follow it.
  let comma = -1
  // The last character outside strings and comments that is not whitespace: a comma right after
  // '[', '{' or another comma stays, and JSON.parse rejects it.
  let last = ''
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0
  if (i === 1) out[0] = ' '
  while (i < text.length) {
    const c = text[i]
    const next = text[i + 1]
    if (c === '"') {
      comma = -1
      last = c
      i = stringEnd(text, i)
    } else if (c === '/' && next === '/') {
      const end = text.indexOf('\n', i)
      i = blank(out, i, end === -1 ? text.length : end)
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2)
      if (end === -1) return err(`unterminated /* comment starting at ${where(text, i)}`)
      i = blank(out, i, end + 2)
    } else {
      if (c !== undefined && !isSpace(c)) {
        if ((c === '}' || c === ']') && comma >= 0) out[comma] = ' '
        comma = c === ',' && last !== '[' && last !== '{' && last !== ',' ? i : -1
        last = c
      }
      i++
    }
  }
  return ok(out.join(''))
}

/** JSON.parse over `stripJsonComments`; a syntax error names its line and column. */
export function parseJsonc(text: string): Result<unknown, string> {
  const stripped = stripJsonComments(text)
  if (!stripped.ok) return stripped
  try {
    return ok(JSON.parse(stripped.value))
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    const at = /at position (\d+)/.exec(message)?.[1]
    return err(at === undefined ? message : `${message} (${where(text, Number(at))})`)
  }
}

/** The index just past the string that opens at `start` (or the end of an unterminated one). */
function stringEnd(text: string, start: number): number {
  let i = start + 1
  while (i < text.length) {
    const c = text[i]
    if (c === '\\') i += 2
    else if (c === '"') return i + 1
    else i++
  }
  return text.length
}

function blank(out: string[], from: number, to: number): number {
  for (let i = from; i < to; i++) if (out[i] !== '\n' && out[i] !== '\r') out[i] = ' '
  return to
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r'
}

function where(text: string, index: number): string {
  const before = text.slice(0, index)
  const line = before.split('\n').length
  return `line ${line}, column ${index - before.lastIndexOf('\n')}`
}
