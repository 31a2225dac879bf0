import type { Database } from './database.js'
import { DbError } from './errors.js'

/**
 * Brings the schema up to date: `user_version` counts the steps applied, each step runs in
 * its own transaction with the version bump, so a crash leaves the schema at a whole step.
 * The version is read again inside each write transaction because another process (the CLI
 * beside a running perch) may have applied the same step meanwhile.
 */
export function runMigrations(db: Database, migrations: readonly string[]): number {
  let version = versionOf(db, migrations.length)
  while (version < migrations.length) {
    db.exec('BEGIN IMMEDIATE')
    try {
      version = versionOf(db, migrations.length)
      if (version < migrations.length) {
        db.exec(migrations[version] ?? '')
        version++
        db.pragma(`user_version = ${version}`)
      }
      db.exec('COMMIT')
    } catch (e) {
      db.rollback()
      throw e
    }
  }
  return migrations.length
}

function versionOf(db: Database, known: number): number {
  const current = db.pragma('user_version')
  const version = typeof current === 'number' ? current : 0
  if (version > known) {
    throw new DbError('schema', db.file, `schema version ${version} was written by a newer perch; this one knows up to ${known}`)
  }
  return version
}
