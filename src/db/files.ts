import { existsSync, renameSync, statfsSync } from 'node:fs'
import { dirname } from 'node:path'
import { err, ok, type Result } from '../core/result.js'
import { type DbError, toDbError } from './errors.js'

/** The files one SQLite database in WAL mode consists of. */
export function databaseFiles(file: string): string[] {
  return [file, `${file}-wal`, `${file}-shm`]
}

/**
 * Renames a damaged database and its -wal/-shm files to `<file>.corrupt-<stamp>` (with the
 * same suffixes), so a fresh one can be created and the old one examined or restored later.
 * Returns the new path of the main file.
 */
export function moveDatabaseAside(file: string, stamp: string): Result<string, DbError> {
  const target = `${file}.corrupt-${stamp}`
  try {
    for (const [from, to] of [
      [file, target],
      [`${file}-wal`, `${target}-wal`],
      [`${file}-shm`, `${target}-shm`],
    ] as const) {
      if (existsSync(from)) renameSync(from, to)
    }
    return ok(target)
  } catch (e) {
    return err(toDbError(e, file))
  }
}

/** A timestamp usable in a file name: 2025-01-31T12-00-00-000Z. */
export function fileStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[:.]/g, '-')
}

/**
 * How big a database may grow on the file system it lives on: its size now plus half the
 * space free at open, and a WAL checkpointed every eighth of the free space (at most SQLite's
 * 1000 pages). In WAL mode a page is written twice (WAL, then the file), and a checkpoint
 * needs room to write what the WAL holds: a database that filled the disk to the last byte
 * could not even commit the deletions that would free it. Undefined when the file system
 * cannot tell its free space.
 */
export function spaceBudget(file: string, pageSize: number, pageCount: number): { maxPages: number; walPages: number } | undefined {
  try {
    const fs = statfsSync(dirname(file))
    const freePages = Math.floor((fs.bavail * fs.bsize) / pageSize)
    if (!Number.isFinite(freePages) || freePages <= 0) return undefined
    return { maxPages: pageCount + Math.max(16, Math.floor(freePages / 2)), walPages: Math.min(1000, Math.max(16, Math.floor(freePages / 8))) }
  } catch {
    return undefined
  }
}
