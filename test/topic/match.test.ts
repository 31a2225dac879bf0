import t from 'tap'
import { matchesFilter } from '../../src/mqtt/topic/match.js'
import { specMatchCases } from './fixtures/spec-cases.js'

// Grouped by normative id so a failure names the rule it breaks.
const ids = [...new Set(specMatchCases.map((c) => c.id))]
const titles: Record<string, string> = {
  'MQTT-4.7.1-2': "'#' matches the parent level and any number of children",
  'MQTT-4.7.1-3': "'+' matches exactly one level, possibly empty",
  'MQTT-4.7.2-1': "$ topics not matched by a leading wildcard",
  'MQTT-4.7.3-4': 'matching is exact, case-sensitive and unnormalised',
}

for (const id of ids) {
  t.test(`[${id}] ${titles[id] ?? ''}`, async (t) => {
    for (const c of specMatchCases) {
      if (c.id !== id) continue
      t.equal(matchesFilter(c.filter, c.topic), c.matches, `${c.filter} vs ${c.topic}`)
    }
  })
}

t.test('a filter without wildcards matches only the identical topic', async (t) => {
  t.ok(matchesFilter('a/b/c', 'a/b/c'))
  t.notOk(matchesFilter('a/b/c', 'a/b'))
  t.notOk(matchesFilter('a/b', 'a/b/c'))
  t.ok(matchesFilter('$SYS/x', '$SYS/x'))
})
