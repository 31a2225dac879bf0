import t from 'tap'
import { parseShared, validTopicFilter, validTopicName } from '../../src/mqtt/topic/validate.js'

const MAX = 65535
const LEVELS = 32

t.test('valid topic names', async (t) => {
  for (const topic of ['a', '/', 'a/b/c', '/finance', 'finance/', 'a//b', '$SYS/uptime', 'Accounts payable', 'caf\u00e9']) {
    t.equal(validTopicName(topic, MAX, LEVELS), null, topic)
  }
})

t.test('[MQTT-4.7.3-1] topic name must not be empty', async (t) => {
  t.equal(validTopicName('', MAX, LEVELS), 'empty topic')
})

t.test('[MQTT-4.7.1-1] wildcards not allowed in topic names', async (t) => {
  for (const topic of ['#', '+', 'a/+', 'a/#', 'a+b', 'sport/tennis#']) {
    t.equal(validTopicName(topic, MAX, LEVELS), 'wildcard in topic name', topic)
  }
})

t.test('[MQTT-4.7.3-2] U+0000 not allowed', async (t) => {
  t.equal(validTopicName('a\u0000b', MAX, LEVELS), 'contains U+0000')
  t.equal(validTopicFilter('a/\u0000', MAX, LEVELS), 'contains U+0000')
})

t.test('[MQTT-4.7.3-3] length is measured in UTF-8 bytes', async (t) => {
  t.equal(validTopicName('a'.repeat(10), 10, LEVELS), null)
  t.equal(validTopicName('a'.repeat(11), 10, LEVELS), 'too long')
  // 'é' is 2 bytes, '€' 3 and '😀' (a surrogate pair) 4.
  t.equal(validTopicName('\u00e9'.repeat(5), 10, LEVELS), null)
  t.equal(validTopicName(`${'\u00e9'.repeat(5)}a`, 10, LEVELS), 'too long')
  t.equal(validTopicName('\u20ac\u20ac\u20ac', 9, LEVELS), null)
  t.equal(validTopicName('\u20ac\u20ac\u20ac', 8, LEVELS), 'too long')
  t.equal(validTopicName('\u{1f600}\u{1f600}', 8, LEVELS), null)
  t.equal(validTopicName('\u{1f600}\u{1f600}', 7, LEVELS), 'too long')
  t.equal(validTopicName('a'.repeat(MAX), MAX, LEVELS), null)
  t.equal(validTopicName('a'.repeat(MAX + 1), MAX, LEVELS), 'too long')
  t.equal(validTopicFilter('\u20ac/#', 5, LEVELS), null)
  t.equal(validTopicFilter('\u20ac/#', 4, LEVELS), 'too long')
})

t.test('level limit counts empty levels', async (t) => {
  t.equal(validTopicName('a/b/c', 100, 3), null)
  t.equal(validTopicName('a/b/c/d', 100, 3), 'too many levels')
  t.equal(validTopicName('//', 100, 3), null)
  t.equal(validTopicName('///', 100, 3), 'too many levels')
  t.equal(validTopicFilter('+/+/#', 100, 3), null)
  t.equal(validTopicFilter('+/+/+/#', 100, 3), 'too many levels')
})

t.test('valid topic filters', async (t) => {
  for (const filter of [
    '#',
    '+',
    '/',
    'sport/tennis/#',
    'sport/+/player1',
    '+/tennis/#',
    '+/+',
    '/+',
    '+/',
    '//#',
    '$SYS/#',
    'a//b',
  ]) {
    t.equal(validTopicFilter(filter, MAX, LEVELS), null, filter)
  }
})

t.test('[MQTT-4.7.3-1] topic filter must not be empty', async (t) => {
  t.equal(validTopicFilter('', MAX, LEVELS), 'empty topic filter')
})

t.test("[MQTT-4.7.1-2] '#' must be alone in the last level", async (t) => {
  t.equal(validTopicFilter('sport/tennis#', MAX, LEVELS), "'#' not alone in its level")
  t.equal(validTopicFilter('#a', MAX, LEVELS), "'#' not alone in its level")
  t.equal(validTopicFilter('sport/tennis/#/ranking', MAX, LEVELS), "'#' not last level")
  t.equal(validTopicFilter('#/', MAX, LEVELS), "'#' not last level")
  t.equal(validTopicFilter('##', MAX, LEVELS), "'#' not alone in its level")
})

t.test("[MQTT-4.7.1-3] '+' must occupy a whole level", async (t) => {
  t.equal(validTopicFilter('sport+', MAX, LEVELS), "'+' not alone in its level")
  t.equal(validTopicFilter('+a/b', MAX, LEVELS), "'+' not alone in its level")
  t.equal(validTopicFilter('a/++', MAX, LEVELS), "'+' not alone in its level")
  t.equal(validTopicFilter('a/+#', MAX, LEVELS), "'+' not alone in its level")
})

t.test('parseShared passes non-shared filters through', async (t) => {
  for (const filter of ['a/b', '#', '$share', '$SHARE/g/a', '$sharex/g/a', '$SYS/#']) {
    t.same(parseShared(filter), { kind: 'plain', filter }, filter)
  }
})

t.test('parseShared splits $share/group/filter', async (t) => {
  t.same(parseShared('$share/g1/sport/#'), { kind: 'shared', group: 'g1', filter: 'sport/#' })
  t.same(parseShared('$share/g/+'), { kind: 'shared', group: 'g', filter: '+' })
  // The inner filter can itself be empty-levelled or '$'-prefixed; validTopicFilter judges it.
  t.same(parseShared('$share/g//'), { kind: 'shared', group: 'g', filter: '/' })
  t.same(parseShared('$share/g/$SYS/#'), { kind: 'shared', group: 'g', filter: '$SYS/#' })
})

t.test('[MQTT-4.8.2-1] share name must be at least one character', async (t) => {
  t.same(parseShared('$share//a'), { kind: 'invalid', reason: 'empty share name' })
})

t.test('[MQTT-4.8.2-2] share name has no wildcards and is followed by / and a filter', async (t) => {
  t.same(parseShared('$share/g+/a'), { kind: 'invalid', reason: 'wildcard in share name' })
  t.same(parseShared('$share/#/a'), { kind: 'invalid', reason: 'wildcard in share name' })
  t.same(parseShared('$share/g'), { kind: 'invalid', reason: 'shared subscription without topic filter' })
  t.same(parseShared('$share/g/'), { kind: 'invalid', reason: 'shared subscription without topic filter' })
  t.same(parseShared('$share/'), { kind: 'invalid', reason: 'shared subscription without topic filter' })
  t.same(parseShared('$share/g\u0000/a'), { kind: 'invalid', reason: 'contains U+0000' })
})
