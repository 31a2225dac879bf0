// A graph becomes one rule in its account's sandbox: its triggers are the data topics of its
// input features, and its module holds the graph's functions, each in a scope of its own.
import { createHash } from 'node:crypto'
import type { FunctionRecord, LinkRecord } from './store.js'

/** Graph names: they become part of a rule name (short enough for one) and of topics. */
export const GRAPH_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,47}$/

/** SHA-256 of the code's UTF-8 bytes, lower-case hex: a function's identity. */
export function digestOf(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('hex')
}

export const DIGEST = /^[0-9a-f]{64}$/

/**
 * The module that checks one function on its own: the code first, so a syntax error's line and
 * column are the code's own; then a check that it defines `run`.
 */
export function checkSource(code: string): string {
  return `${code}
;if (typeof run !== 'function') throw new TypeError('the code must define a function run(...)');
export function onMessage() {}
`
}

export interface GraphEnd {
  readonly topic: string
  readonly func: string | null
}

export interface GraphPlan {
  readonly inputs: readonly GraphEnd[]
  readonly outputs: readonly GraphEnd[]
  readonly join: string | null
}

/** The graph's links as data topics, in link order. */
export function planGraph(links: readonly LinkRecord[], join: string | null, topicOf: (l: LinkRecord) => string): GraphPlan {
  const ends = (kind: 'idf' | 'odf'): GraphEnd[] => links.filter((l) => l.kind === kind).map((l) => ({ topic: topicOf(l), func: l.func }))
  return { inputs: ends('idf'), outputs: ends('odf'), join }
}

/** A graph with an input and an output runs; anything less waits for more links. */
export const runnable = (p: GraphPlan): boolean => p.inputs.length > 0 && p.outputs.length > 0

/**
 * The rule source of a graph. Data is JSON (a payload that is not JSON is taken as a string).
 * For each message on an input: its IDF function, if any; then the join function, called with
 * the latest value of every input in link order once each has one (without a join, the value
 * itself); then each output's ODF function, and a publish of the result as JSON. A function
 * that returns undefined stops the value there.
 */
export function graphSource(account: string, graph: string, plan: GraphPlan, functions: ReadonlyMap<string, FunctionRecord>): string {
  const used = new Set<string>()
  for (const e of [...plan.inputs, ...plan.outputs]) if (e.func !== null) used.add(e.func)
  if (plan.join !== null) used.add(plan.join)
  const defs = [...used].map((d) => {
    const code = functions.get(d)?.code
    if (code === undefined) throw new Error(`function ${d} is not stored`)
    return `F[${JSON.stringify(d)}] = wrap(${JSON.stringify(d.slice(0, 12))}, (function () {\n${code}\n;return run })());`
  })
  return `// graph ${graph} of account ${account}
const F = {};
function wrap(id, fn) {
  return function (...args) {
    try { return fn(...args) } catch (e) {
      const m = e instanceof Error ? e.name + ': ' + e.message : String(e);
      throw new Error('function ' + id + ': ' + m);
    }
  };
}
${defs.join('\n')}
const INPUTS = ${JSON.stringify(plan.inputs)}.map((e) => ({ topic: e.topic, fn: e.func === null ? null : F[e.func] }));
const OUTPUTS = ${JSON.stringify(plan.outputs)}.map((e) => ({ topic: e.topic, fn: e.func === null ? null : F[e.func] }));
const JOIN = ${plan.join === null ? 'null' : `F[${JSON.stringify(plan.join)}]`};
const INDEX = new Map(INPUTS.map((e, i) => [e.topic, i]));
const latest = new Array(INPUTS.length);
const seen = new Array(INPUTS.length).fill(false);
let missing = INPUTS.length;
function decode(p) { try { return JSON.parse(p) } catch { return p } }
export function onMessage(msg) {
  const i = INDEX.get(msg.topic);
  if (i === undefined) return;
  const fn = INPUTS[i].fn;
  const v = fn === null ? decode(msg.payload) : fn(decode(msg.payload));
  if (v === undefined) return;
  latest[i] = v;
  if (!seen[i]) { seen[i] = true; missing--; }
  let joined = v;
  if (JOIN !== null) {
    if (missing > 0) return;
    joined = JOIN.apply(undefined, latest);
    if (joined === undefined) return;
  }
  for (const out of OUTPUTS) {
    const y = out.fn === null ? joined : out.fn(joined);
    if (y !== undefined) publish(out.topic, JSON.stringify(y));
  }
}
`
}
