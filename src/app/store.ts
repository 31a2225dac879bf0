import { isAbsolute, join } from 'node:path'
import type { Clock } from '../core/clock.js'
import { PerchError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { type DbError, fileStamp, moveDatabaseAside, toDbError } from '../db/index.js'
import { MemorySessionStore } from '../mqtt/session/memory-store.js'
import type { SessionStore, StoredState } from '../mqtt/session/store.js'
import { SqliteSessionStore } from '../persistence/sqlite-store.js'
import type { PerchConfig } from './config.js'

export interface OpenedStore {
  readonly store: SessionStore
  readonly state: StoredState
}

/** Where the database lives: `persistence.file`, relative to the data directory unless absolute. */
export function databasePath(config: PerchConfig): string {
  const f = config.persistence.file
  return isAbsolute(f) ? f : join(config.dataDir, f)
}

/**
 * Builds the configured SessionStore and loads what it kept. A damaged database either stops
 * the start with an error naming the file and the way out (`onCorrupt: "fail"`), or is moved
 * aside loudly and replaced by an empty one (`"move-aside"`): never a silent empty broker.
 */
export function openSessionStore(config: PerchConfig, clock: Clock, logger: Logger): OpenedStore {
  if (config.persistence.mode === 'memory') {
    const store = new MemorySessionStore()
    return { store, state: store.load() }
  }
  const file = databasePath(config)
  const first = tryOpen(file, config, clock, logger)
  if (!(first instanceof Error)) return first
  if (!first.damaged) throw startError(first, unusableHint(first))
  if (config.persistence.onCorrupt === 'fail') {
    throw startError(
      first,
      'perch does not start on a damaged database. Restore the file from a backup, or set persistence.onCorrupt to "move-aside" ' +
        'in the config file: perch then renames it (with its -wal and -shm files) to <file>.corrupt-<time> and starts with no sessions, ' +
        'queued messages or retained messages.',
    )
  }
  const moved = moveDatabaseAside(file, fileStamp(clock.now()))
  if (!moved.ok) throw startError(moved.error, `the damaged database could not be moved aside (${first.message})`)
  logger.warn('persistence.moved-aside', {
    file,
    movedTo: moved.value,
    reason: first.message,
    code: first.code,
    note: 'THE DATABASE WAS DAMAGED AND HAS BEEN MOVED ASIDE: perch starts with an EMPTY state (no sessions, queued or retained messages)',
  })
  const second = tryOpen(file, config, clock, logger)
  if (second instanceof Error) throw startError(second, unusableHint(second))
  return second
}

function tryOpen(file: string, config: PerchConfig, clock: Clock, logger: Logger): OpenedStore | DbError {
  const p = config.persistence
  const opened = SqliteSessionStore.open(file, {
    synchronous: p.synchronous,
    commitIntervalMs: p.commitIntervalMs,
    commitMaxWrites: p.commitMaxWrites,
    clock,
    logger: logger.child({ component: 'store' }),
  })
  if (!opened.ok) return opened.error
  try {
    const state = opened.value.load()
    logger.info('persistence.opened', {
      file,
      synchronous: p.synchronous,
      maxBytes: opened.value.maxBytes,
      sessions: state.sessions.length,
      retained: state.retained.length,
    })
    return { store: opened.value, state }
  } catch (e) {
    opened.value.close()
    return toDbError(e, file)
  }
}

function unusableHint(e: DbError): string {
  if (e.kind === 'unreadable') return 'check that the file and its directory exist and are readable and writable by the user perch runs as'
  if (e.kind === 'full') return 'free some space on that file system, or point persistence.file elsewhere'
  if (e.kind === 'busy') return 'another perch may be running on the same data directory'
  return 'check the storage device'
}

function startError(e: DbError, hint: string): PerchError {
  return new PerchError(e.code, `${e.message}: ${hint}`, { cause: e })
}
