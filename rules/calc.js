// calc: evaluates an arithmetic request and answers with the result. The reference engine's
// example script answered a message on /A/calc with one on /A/calc/result; this one does the
// same, without eval (rules cannot compile code at run time).
//
// A request (the payload) is one of
//   {"op": "add", "args": [1, 2]}     add sub mul div (2+ args, left to right), min max avg (1+),
//                                     mod pow (2), sqrt abs (1)
//   {"expr": "(1 + 2) * 3"}           + - * / % and ^ (or **), parentheses, unary minus, 1.5e3
//   (1 + 2) * 3                       the same expression as plain text (or a JSON string)
// An "id" in a JSON request is echoed in the answer.
//
// The answer, {"result": 9} (with "id" when given), is published on calc/result (relative, so
// /A/calc/result) and returned: through /A/run/calc or /A/runfile/calc it also comes back on
// <that topic>/result. A bad request logs a warning, publishes nothing and returns
// {"error": "..."} (so a run caller learns why); calc never throws for bad input.

const RESULT_TOPIC = 'calc/result'
const MAX_EXPRESSION = 1000
const MAX_DEPTH = 50
const MAX_ARGS = 1000

/** Arity and implementation of each op; without `max`, any number of args from `min` on. */
const OPS = {
  add: { min: 2, fn: (a) => a.reduce((x, y) => x + y) },
  sub: { min: 2, fn: (a) => a.reduce((x, y) => x - y) },
  mul: { min: 2, fn: (a) => a.reduce((x, y) => x * y) },
  div: { min: 2, fn: (a) => a.reduce((x, y) => divide(x, y)) },
  mod: { min: 2, max: 2, fn: ([x, y]) => modulo(x, y) },
  pow: { min: 2, max: 2, fn: ([x, y]) => x ** y },
  min: { min: 1, fn: (a) => Math.min(...a) },
  max: { min: 1, fn: (a) => Math.max(...a) },
  avg: { min: 1, fn: (a) => a.reduce((x, y) => x + y) / a.length },
  sqrt: { min: 1, max: 1, fn: ([x]) => Math.sqrt(x) },
  abs: { min: 1, max: 1, fn: ([x]) => Math.abs(x) },
}

/** A request calc cannot answer: reported to the caller, never thrown out of the rule. */
class BadRequest extends Error {}

function divide(x, y) {
  if (y === 0) throw new BadRequest('division by zero')
  return x / y
}

function modulo(x, y) {
  if (y === 0) throw new BadRequest('division by zero')
  return x % y
}

export function onMessage(msg) {
  let id
  try {
    const request = readRequest(msg.payload)
    id = request.id
    const result = request.expr === undefined ? applyOp(request.op, request.args) : evaluate(request.expr)
    if (!Number.isFinite(result)) throw new BadRequest('the result is not a finite number')
    const answer = id === undefined ? { result } : { id, result }
    publish(RESULT_TOPIC, answer)
    return answer
  } catch (e) {
    if (!(e instanceof BadRequest)) throw e
    log.warn(`calc: bad request on ${msg.topic}: ${e.message}`)
    return id === undefined ? { error: e.message } : { id, error: e.message }
  }
}

/** `{ op, args, id }` or `{ expr, id }` from a payload. */
function readRequest(payload) {
  if (payload.trim() === '') throw new BadRequest('empty request')
  let body
  try {
    body = JSON.parse(payload)
  } catch {
    return { expr: payload } // not JSON: an expression as plain text
  }
  if (typeof body === 'number') return { expr: payload }
  if (typeof body === 'string') return { expr: body }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequest('a request is {"op": ..., "args": [...]}, {"expr": "..."} or an expression')
  }
  const id = typeof body.id === 'string' || typeof body.id === 'number' ? body.id : undefined
  if (typeof body.expr === 'string') return { expr: body.expr, id }
  if (typeof body.op !== 'string') throw new BadRequest('missing "op" (or "expr")')
  return { op: body.op, args: body.args, id }
}

function applyOp(name, args) {
  const op = Object.hasOwn(OPS, name) ? OPS[name] : undefined
  if (op === undefined) throw new BadRequest(`unknown op "${name}" (one of ${Object.keys(OPS).join(', ')})`)
  if (!Array.isArray(args)) throw new BadRequest('"args" must be an array of numbers')
  if (args.length > MAX_ARGS) throw new BadRequest(`more than ${MAX_ARGS} args`)
  if (!args.every((a) => typeof a === 'number' && Number.isFinite(a))) throw new BadRequest('"args" must be an array of numbers')
  if (args.length < op.min || (op.max !== undefined && args.length > op.max)) {
    const count = `${op.max === undefined ? 'at least' : 'exactly'} ${op.min} number${op.min === 1 ? '' : 's'}`
    throw new BadRequest(`"${name}" needs ${count} in "args", got ${args.length}`)
  }
  return op.fn(args)
}

const NUMBER = /(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y
const SPACE = /\s*/y

/**
 * A recursive-descent evaluator:
 *   sum     = product (("+" | "-") product)*
 *   product = unary (("*" | "/" | "%") unary)*
 *   unary   = ("-" | "+") unary | power
 *   power   = primary (("^" | "**") unary)?        (right-associative: 2^3^2 = 2^9; -2^2 = -4)
 *   primary = number | "(" sum ")"
 * Nesting is limited so a hostile request cannot exhaust the stack.
 */
function evaluate(text) {
  if (text.length > MAX_EXPRESSION) throw new BadRequest(`the expression is longer than ${MAX_EXPRESSION} characters`)
  let pos = 0
  let depth = 0

  const fail = (what) => {
    throw new BadRequest(`${what} at position ${pos + 1} of "${text}"`)
  }
  const peek = () => {
    SPACE.lastIndex = pos
    SPACE.exec(text)
    pos = SPACE.lastIndex
    return text[pos]
  }
  const enter = () => {
    if (++depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH}`)
  }

  function sum() {
    let v = product()
    for (;;) {
      const c = peek()
      if (c === '+') {
        pos++
        v += product()
      } else if (c === '-') {
        pos++
        v -= product()
      } else return v
    }
  }

  function product() {
    let v = unary()
    for (;;) {
      const c = peek()
      if (c === '*' && text[pos + 1] !== '*') {
        pos++
        v *= unary()
      } else if (c === '/') {
        pos++
        v = divide(v, unary())
      } else if (c === '%') {
        pos++
        v = modulo(v, unary())
      } else return v
    }
  }

  function unary() {
    const c = peek()
    if (c === '-' || c === '+') {
      enter()
      pos++
      const v = unary()
      depth--
      return c === '-' ? -v : v
    }
    return power()
  }

  function power() {
    const base = primary()
    const c = peek()
    if (c === '^' || (c === '*' && text[pos + 1] === '*')) {
      enter()
      pos += c === '^' ? 1 : 2
      const exponent = unary()
      depth--
      return base ** exponent
    }
    return base
  }

  function primary() {
    const c = peek()
    if (c === '(') {
      enter()
      pos++
      const v = sum()
      depth--
      if (peek() !== ')') fail('expected ")"')
      pos++
      return v
    }
    NUMBER.lastIndex = pos
    const m = NUMBER.exec(text)
    if (m === null) fail(c === undefined ? 'unexpected end' : `unexpected "${c}"`)
    pos = NUMBER.lastIndex
    return Number(m[0])
  }

  const v = sum()
  if (peek() !== undefined) fail(`unexpected "${text[pos]}"`)
  return v
}
