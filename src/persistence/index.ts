export { type CommitCallback, type CommitStats, GroupCommit, type GroupCommitOptions } from './group-commit.js'
export { SqliteSessionStore, type SqliteStoreOptions } from './sqlite-store.js'
export type { RowCounts } from './statements.js'
