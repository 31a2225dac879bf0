import { PerchError } from '../core/errors.js'

/**
 * What went wrong with a database file, as far as a user can act on it: a damaged file
 * (corrupt, not a database) can be moved aside; an unreadable one needs its permissions
 * fixed; a full disk needs space; an I/O error needs the storage checked.
 */
export type DbErrorKind = 'corrupt' | 'not-a-database' | 'unreadable' | 'full' | 'io' | 'busy' | 'schema' | 'other'

const CODES: Readonly<Record<DbErrorKind, string>> = {
  corrupt: 'EDB_CORRUPT',
  'not-a-database': 'EDB_NOTADB',
  unreadable: 'EDB_UNREADABLE',
  full: 'EDB_FULL',
  io: 'EDB_IO',
  busy: 'EDB_BUSY',
  schema: 'EDB_SCHEMA',
  other: 'EDB_OTHER',
}

const WHAT: Readonly<Record<DbErrorKind, string>> = {
  corrupt: 'database is corrupt',
  'not-a-database': 'file is not an SQLite database',
  unreadable: 'database cannot be opened',
  full: 'disk full',
  io: 'I/O error',
  busy: 'database is locked',
  schema: 'database schema is not supported',
  other: 'database error',
}

/** A database failure with a stable code; its message always names the file. */
export class DbError extends PerchError {
  readonly kind: DbErrorKind
  readonly file: string

  /** `cause` is what the driver or the file system threw (SQLITE_FULL, EACCES...), if anything. */
  constructor(kind: DbErrorKind, file: string, detail: string, cause?: unknown) {
    super(CODES[kind], `${WHAT[kind]}: ${file}${detail === '' ? '' : ` (${detail})`}`, { cause })
    this.name = 'DbError'
    this.kind = kind
    this.file = file
  }

  /** Damaged beyond use: moving the file aside and starting fresh is the only way forward. */
  get damaged(): boolean {
    return this.kind === 'corrupt' || this.kind === 'not-a-database'
  }
}

/** The SQLite result code family (SQLITE_IOERR_WRITE -> SQLITE_IOERR) or a system code. */
function codeOf(e: unknown): string {
  if (typeof e !== 'object' || e === null || !('code' in e)) return ''
  const code = (e as { code: unknown }).code
  return typeof code === 'string' ? code : ''
}

function kindOf(code: string): DbErrorKind {
  const family = code.startsWith('SQLITE_') ? code.split('_').slice(0, 2).join('_') : code
  switch (family) {
    case 'SQLITE_CORRUPT':
      return 'corrupt'
    case 'SQLITE_NOTADB':
      return 'not-a-database'
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_PERM':
    case 'SQLITE_READONLY':
    case 'SQLITE_AUTH':
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
    case 'EISDIR':
      return 'unreadable'
    case 'SQLITE_FULL':
    case 'ENOSPC':
    case 'EDQUOT':
      return 'full'
    case 'SQLITE_IOERR':
    case 'EIO':
      return 'io'
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return 'busy'
    default:
      return 'other'
  }
}

/** Classifies whatever the driver or the file system threw while working on `file`. */
export function toDbError(e: unknown, file: string): DbError {
  if (e instanceof DbError) return e
  const code = codeOf(e)
  const message = e instanceof Error ? e.message : String(e)
  return new DbError(kindOf(code), file, code === '' ? message : `${code}: ${message}`, e)
}
