// bench/RESULTS.md keeps history: each run's section goes in below the marker, newest first.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'

const MARKER = '<!-- bench/run.js inserts new runs below this line, newest first -->'

export function prependSection(file, section) {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(MARKER)
  const text = at >= 0 ? `${old.slice(0, at + MARKER.length)}\n\n${section}\n${old.slice(at + MARKER.length).replace(/^\n+/, '')}` : `${section}\n${old}`
  writeFileSync(file, text)
}
