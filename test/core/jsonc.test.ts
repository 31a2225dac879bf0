import t from 'tap'
import { parseJsonc, stripJsonComments } from '../../src/core/jsonc.js'

function parsed(text: string): unknown {
  const r = parseJsonc(text)
  if (!r.ok) throw new Error(`expected ${JSON.stringify(text)} to parse: ${r.error}`)
  return r.value
}

function failure(text: string): string {
  const r = parseJsonc(text)
  if (r.ok) throw new Error(`expected ${JSON.stringify(text)} to fail, got ${JSON.stringify(r.value)}`)
  return r.error
}

t.test('line and block comments are removed wherever whitespace may go', async (t) => {
  const text = `// heading
{ /* before a key */ "a": 1, // after a value
  "b": /* inside */ [1, /* between */ 2],
  /* several
     lines */
  "c": { "d": true } // last
}
// trailing`
  t.same(parsed(text), { a: 1, b: [1, 2], c: { d: true } })
})

t.test('comment markers inside strings are text', async (t) => {
  const text = `{ "url": "mysql://u:p@h/db", "glob": "a/*b*/c", "path": "//server/share", "open": "/*" }`
  t.same(parsed(text), { url: 'mysql://u:p@h/db', glob: 'a/*b*/c', path: '//server/share', open: '/*' })
})

t.test('escaped quotes and backslashes do not end a string early, nor late', async (t) => {
  const text = String.raw`{
    "say": "he said \"// not a comment\" /* nor this */",
    "dir": "C:\\", // a comment after a string ending in a backslash
    "mixed": "\\\"// still text" /* a comment */
  }`
  t.same(parsed(text), { say: 'he said "// not a comment" /* nor this */', dir: 'C:\\', mixed: '\\"// still text' })
})

t.test('quotes and markers inside comments do not open strings or comments', async (t) => {
  t.same(parsed('// a "quote and a /* marker\n{"a": 1}'), { a: 1 })
  t.same(parsed('/* a "quote", // and */ {"a": "b"}'), { a: 'b' })
  t.same(parsed('{"a": 1} /**/ /***/ /* ** / */'), { a: 1 })
})

t.test('trailing commas in objects and arrays are allowed, comments or not after them', async (t) => {
  t.same(parsed('{"a": [1, 2,], "b": {"c": 3,},}'), { a: [1, 2], b: { c: 3 } })
  t.same(parsed('{\n  "a": 1, // the last one\n  /* nothing more */\n}'), { a: 1 })
  t.same(parsed('[\n  "x", // keep a comma\n]'), ['x'])
})

t.test('a comma that stands for a missing value is still an error', async (t) => {
  for (const text of ['[,]', '{,}', '[1,,]', '[1,,2]', '{"a":1,,}', '[ /* c */ , ]']) t.match(failure(text), /JSON/, text)
})

t.test('stripping keeps every offset: same length, newlines where they were', async (t) => {
  const text = '{\r\n  "a": 1, // one\r\n  /* two\r\n  lines */ "b": [2,],\r\n}'
  const r = stripJsonComments(text)
  if (!r.ok) throw new Error(r.error)
  t.equal(r.value.length, text.length)
  for (let i = 0; i < text.length; i++) if (text[i] === '\n' || text[i] === '\r') t.equal(r.value[i], text[i], `character ${i}`)
  t.same(JSON.parse(r.value), { a: 1, b: [2] })
})

t.test('an unterminated block comment is an error naming where it starts', async (t) => {
  const r = stripJsonComments('{\n  "a": 1,\n    /* never closed\n  "b": 2\n}')
  t.notOk(r.ok)
  if (!r.ok) t.equal(r.error, 'unterminated /* comment starting at line 3, column 5')
  t.match(failure('/*'), /unterminated \/\* comment starting at line 1, column 1/)
  t.match(failure('{"a": "*/"} /* open'), /unterminated \/\* comment starting at line 1, column 13/, 'a closing marker in a string closes nothing')
})

t.test('a syntax error names its line and column in the original text', async (t) => {
  const text = '{\n  // a comment\n  "a": 1,\n  "b" 2\n}'
  t.match(failure(text), /line 4, column 7/)
  t.match(failure('{"a": "no end // here\n}'), /Unterminated string|Bad control character/)
  t.match(failure('{"a": 1} */'), /JSON/)
  t.match(failure('{"a": 1} / 2'), /JSON/)
  t.match(failure(''), /Unexpected end of JSON input/)
})

t.test('plain JSON parses as before, a byte-order mark too', async (t) => {
  const value = { s: 'x', n: -1.5e3, b: false, z: null, a: [{}, []] }
  t.same(parsed(JSON.stringify(value, null, 2)), value)
  t.same(parsed(`\uFEFF${JSON.stringify(value)}`), value)
})
