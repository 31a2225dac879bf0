// Public surface of mqtt/topic (L2): pure matching structures, no I/O.
export { matchesFilter } from './match.js'
export { filterCovers, filtersOverlap } from './relations.js'
export type { RetainedVisitor } from './retained.js'
export { RetainedTree } from './retained.js'
export type { TrieVisitor } from './trie.js'
export { SubscriptionTrie } from './trie.js'
export type { ParsedFilter } from './validate.js'
export { parseShared, validTopicFilter, validTopicName } from './validate.js'
