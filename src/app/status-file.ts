// A running perch's figures for `perch status`: the $SYS entries, written to the data directory
// each time they are published (atomically, so a reader never sees half a file).
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const STATUS_FILE = 'status.json'

export interface StatusFile {
  readonly pid: number
  readonly version: string
  readonly writtenAt: number
  /** Seconds between writes: a file much older than this is from a perch that stopped. */
  readonly interval: number
  readonly entries: Readonly<Record<string, string>>
}

export function writeStatusFile(dataDir: string, status: StatusFile): void {
  const file = join(dataDir, STATUS_FILE)
  try {
    writeFileSync(`${file}.tmp`, `${JSON.stringify(status, null, 2)}\n`, { mode: 0o600 })
    renameSync(`${file}.tmp`, file)
  } catch {
    // the status file is a convenience for the CLI; serving goes on without it
  }
}

export function readStatusFile(dataDir: string): StatusFile | undefined {
  try {
    return JSON.parse(readFileSync(join(dataDir, STATUS_FILE), 'utf8')) as StatusFile
  } catch {
    return undefined
  }
}
