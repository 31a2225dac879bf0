import type { Database } from './database.js'
import { DbError } from './errors.js'

/**
 * Brings the schema up to date: `user_version` counts the steps applied, each step runs in
 * its own transaction with the version bump, so a crash leaves the schema at a whole step.
 */
export function runMigrations(db: Database, migrations: readonly string[]): number {
  const current = db.pragma('user_version')
  const version = typeof current === 'number' ? current : 0
  if (version > migrations.length) {
    throw new DbError('schema', db.file, `schema version ${version} was written by a newer perch; this one knows up to ${migrations.length}`)
  }
  for (let i = version; i < migrations.length; i++) {
    db.exec('BEGIN IMMEDIATE')
    try {
      db.exec(migrations[i] ?? '')
      db.pragma(`user_version = ${i + 1}`)
      db.exec('COMMIT')
    } catch (e) {
      db.rollback()
      throw e
    }
  }
  return migrations.length
}
