// What the benchmarks' reports share: medians, a description of the machine, and
// bench/RESULTS.md, which keeps history: each run's section goes in below the marker, newest first.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'

const MARKER = '<!-- bench/run.js inserts new runs below this line, newest first -->'

export function prependSection(file, section) {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(MARKER)
  const text = at >= 0 ? `${old.slice(0, at + MARKER.length)}\n\n${section}\n${old.slice(at + MARKER.length).replace(/^\n+/, '')}` : `${section}\n${old}`
  writeFileSync(file, text)
}

export function median(xs) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const h = s.length >> 1
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2
}

export function sh(cmd) {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' })
  return (r.stdout || '').trim()
}

export function machine() {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))
  const mem = sh("free -h | awk '/^Mem:/ {print $2}'")
  return `nproc ${sh('nproc')}, ${mem} RAM (free -h total), ${cpu ? cpu[1].trim() : os.cpus()[0]?.model}`
}
