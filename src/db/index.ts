export { Database, type OpenOptions, openDatabase, openSharedDatabase, type SqlValue, Statement, type Synchronous } from './database.js'
export { DbError, type DbErrorKind, toDbError } from './errors.js'
export { databaseFiles, fileStamp, moveDatabaseAside, spaceBudget } from './files.js'
export { runMigrations } from './migrate.js'
