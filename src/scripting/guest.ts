// Guest-side code, evaluated in every rule context before the rule itself.
//
// Why the API lives in the guest: a guest->host call costs ~3 us in quickjs-emscripten 0.32, a
// guest->guest call 0.05 us. So publish/kv.set/kv.delete/log only append to an array here, and
// the batch returns ONE JSON string the host parses and validates (a failing batch returns an
// error instead, so nothing of it is applied). The only host function is kv.get.
//
// None of this is trusted by the host: the rule runs in the same context and could corrupt it.
// The wrapper's checks give rule authors early errors at the right line; the host re-checks
// everything it receives (effects.ts).
//
// The bootstrap also
// - seeds Math.random from the host (QuickJS seeds it from a coarse clock: contexts created back
//   to back produced the same sequence),
// - removes code generation (eval, Function and its async/generator twins; the Eval intrinsic
//   cannot be dropped, evalCode itself needs it),
// - removes WeakRef/FinalizationRegistry (GC timing),
// - freezes the intrinsics so a rule cannot pollute prototypes for its own next invocation.
//   Frozen prototypes break `obj.toString = f` and `this.name = 'X'` in an Error subclass (the
//   "override mistake"), so those few properties become accessors that define an own property.

/** Name of the bootstrap script inside the sandbox; its frames are never shown to rule authors. */
export const PRELUDE_FILE = 'perch:host'

export interface GuestConfig {
  seed: number
  now: number
  maxPublishes: number
  maxKeyBytes: number
  maxValueBytes: number
  maxAccountBytes: number
  maxLogs: number
  maxLogChars: number
}

/**
 * Input tuples of a batch, `{ n: now, i: [...] }`: `[0, topic, payload]`, `[1, at]`, `[2, event]`.
 * Output: `{ e: [...effects], r: JSON of the last return value | null }` or `{ x: [name, message, stack] }`.
 * Effect tuples: `[0, topic, payload, qos, retain]`, `[1, key, value]`, `[2, key]`, `[3, level, message]`.
 */
export const INPUT_MESSAGE = 0
export const INPUT_TIMER = 1
export const INPUT_EVENT = 2

/**
 * `(configJson, kvGet) => install`, then `install(namespace) => [batch, finish, handlers]` where
 * handlers is a string of `m`, `t`, `e` for the exported onMessage/onTimer/onEvent.
 */
export const PRELUDE = String.raw`(function bootstrap(configJson, kvGetHost) {
  'use strict';
  const config = JSON.parse(configJson);
  const G = globalThis;
  const { freeze, defineProperty, getPrototypeOf, getOwnPropertyDescriptor } = Object;
  const { ownKeys, apply } = Reflect;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const PromiseCtor = Promise;
  const promiseThen = Promise.prototype.then;
  const MapCtor = Map;
  const ErrorCtor = Error;
  const StringCtor = String;
  const MAX_PUBLISHES = config.maxPublishes;
  const MAX_KEY = config.maxKeyBytes;
  const MAX_VALUE = config.maxValueBytes;
  const MAX_ACCOUNT = config.maxAccountBytes;
  const MAX_LOGS = config.maxLogs;
  const MAX_LOG_CHARS = config.maxLogChars;

  function LimitError(message) {
    const e = new ErrorCtor(message);
    defineProperty(e, 'name', { value: 'LimitError', writable: true, configurable: true });
    return e;
  }

  // --- state of the batch in progress -------------------------------------------------------
  let out = [];
  let published = 0;
  let logged = 0;
  let overlay = new MapCtor();
  let overlayBytes = 0;
  let batchNow = config.now;

  // UTF-8 size; only computed when the UTF-16 length cannot rule out the limit.
  const ascii = /[\x00-\x7f]+/g;
  function utf8(s) {
    const rest = s.replace(ascii, '');
    let n = s.length;
    for (let i = 0; i < rest.length; i++) {
      const c = rest.charCodeAt(i);
      n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
    }
    return n;
  }
  function bytesOver(s, limit) {
    return s.length * 3 > limit && utf8(s) > limit;
  }
  function toText(what, v) {
    if (typeof v === 'string') return v;
    const s = v === undefined ? undefined : stringify(v);
    if (typeof s !== 'string') throw new TypeError(what + ' must be a string or a JSON-serializable value');
    return s;
  }

  // --- the host API -------------------------------------------------------------------------
  function publish(topic, payload, options) {
    if (typeof topic !== 'string' || topic.length === 0) throw new TypeError('publish: topic must be a non-empty string');
    if (topic.indexOf('+') >= 0 || topic.indexOf('#') >= 0 || topic.indexOf('\u0000') >= 0) {
      throw new TypeError('publish: topic must not contain "+", "#" or NUL');
    }
    const text = toText('publish: payload', payload === undefined ? '' : payload);
    let qos = 0;
    let retain = false;
    if (options !== undefined && options !== null) {
      const q = options.qos;
      const r = options.retain;
      if (q !== undefined) {
        if (q !== 0 && q !== 1 && q !== 2) throw new TypeError('publish: qos must be 0, 1 or 2');
        qos = q;
      }
      if (r !== undefined) {
        if (typeof r !== 'boolean') throw new TypeError('publish: retain must be a boolean');
        retain = r;
      }
    }
    if (++published > MAX_PUBLISHES) throw LimitError('publish: more than ' + MAX_PUBLISHES + ' publishes in one invocation');
    out.push([0, topic, text, qos, retain]);
  }

  function checkKey(key) {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('kv: key must be a non-empty string');
    if (bytesOver(key, MAX_KEY)) throw LimitError('kv: key is longer than ' + MAX_KEY + ' bytes');
  }
  function entryBytes(key, value) {
    return value === undefined ? 0 : utf8(key) + utf8(value);
  }
  function remember(key, value) {
    const before = overlay.has(key) ? entryBytes(key, overlay.get(key)) : 0;
    const after = entryBytes(key, value);
    // What this batch alone keeps in the store; the host checks the true total afterwards.
    if (after > before && overlayBytes + after - before > MAX_ACCOUNT) {
      throw LimitError('kv: more than ' + MAX_ACCOUNT + ' bytes stored for this account');
    }
    overlayBytes += after - before;
    overlay.set(key, value);
  }
  const kv = {
    get(key) {
      checkKey(key);
      if (overlay.has(key)) return overlay.get(key);
      return kvGetHost(key);
    },
    set(key, value) {
      checkKey(key);
      const text = toText('kv.set: value', value);
      if (bytesOver(text, MAX_VALUE)) throw LimitError('kv.set: value is larger than ' + MAX_VALUE + ' bytes');
      remember(key, text);
      out.push([1, key, text]);
    },
    delete(key) {
      checkKey(key);
      remember(key, undefined);
      out.push([2, key]);
    },
  };

  function format(args) {
    let s = '';
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      let t;
      if (typeof a === 'string') t = a;
      else {
        try {
          t = a === undefined ? 'undefined' : stringify(a);
          if (typeof t !== 'string') t = StringCtor(a);
        } catch {
          try { t = StringCtor(a); } catch { t = '[unprintable]'; }
        }
      }
      s += (i === 0 ? '' : ' ') + t;
      if (s.length > MAX_LOG_CHARS) return s.slice(0, MAX_LOG_CHARS) + '...';
    }
    return s;
  }
  function logger(level) {
    return function (...args) {
      if (++logged > MAX_LOGS) {
        if (logged === MAX_LOGS + 1) out.push([3, 'warn', 'log: more than ' + MAX_LOGS + ' lines in one invocation; the rest were dropped']);
        return;
      }
      out.push([3, level, format(args)]);
    };
  }
  const log = { info: logger('info'), warn: logger('warn'), error: logger('error') };
  function now() {
    return batchNow;
  }

  // --- determinism and code generation ------------------------------------------------------
  let seed = config.seed >>> 0 || 0x9e3779b9;
  function random() {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed / 4294967296;
  }
  defineProperty(Math, 'random', { value: random, writable: true, configurable: true });

  const FunctionPrototype = getPrototypeOf(function () {});
  const noCodegen = function Function() {
    throw new EvalError('rules cannot compile code at run time (eval and Function are disabled)');
  };
  defineProperty(noCodegen, 'prototype', { value: FunctionPrototype });
  for (const f of [function () {}, async function () {}, function* () {}, async function* () {}]) {
    defineProperty(getPrototypeOf(f), 'constructor', { value: noCodegen, writable: true, configurable: true });
  }
  defineProperty(G, 'Function', { value: noCodegen, writable: true, configurable: true });
  delete G.eval;
  delete G.WeakRef;
  delete G.FinalizationRegistry;

  for (const [name, value] of [['publish', publish], ['kv', kv], ['log', log], ['now', now]]) {
    defineProperty(G, name, { value, writable: false, enumerable: false, configurable: false });
  }

  // --- freeze the intrinsics ----------------------------------------------------------------
  const tamed = ['constructor', 'toString', 'toLocaleString', 'valueOf', 'name', 'message'];
  function tame(proto) {
    for (const key of tamed) {
      const d = getOwnPropertyDescriptor(proto, key);
      if (d === undefined || !('value' in d) || !d.configurable) continue;
      const value = d.value;
      defineProperty(proto, key, {
        get() { return value; },
        set(v) {
          if (this === proto) throw new TypeError('Cannot assign to read only property ' + StringCtor(key));
          defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
        },
        enumerable: d.enumerable,
        configurable: false,
      });
    }
  }
  // Shallow on purpose: constructors, namespaces (Math, JSON, Reflect) and every prototype on the
  // way are frozen, which is what a rule could pollute for its next invocation; the method
  // functions themselves are left alone (a deep walk cost ~2 ms per rule).
  const seen = new Set();
  function lock(o) {
    if ((typeof o !== 'object' && typeof o !== 'function') || o === null || o === G || seen.has(o)) return;
    seen.add(o);
    if (typeof o === 'function') {
      const d = getOwnPropertyDescriptor(o, 'prototype');
      if (d !== undefined && 'value' in d) lock(d.value);
    }
    freeze(o);
    lock(getPrototypeOf(o));
  }
  const globals = [];
  for (const key of ownKeys(G)) {
    const d = getOwnPropertyDescriptor(G, key);
    if (d !== undefined && 'value' in d) globals.push(d.value);
  }
  // Tame first: a prototype is often reached (and frozen) through another one's chain before
  // its own constructor comes up.
  tame(FunctionPrototype);
  for (const g of globals) {
    if (typeof g !== 'function') continue;
    const d = getOwnPropertyDescriptor(g, 'prototype');
    if (d !== undefined && 'value' in d && typeof d.value === 'object' && d.value !== null) tame(d.value);
  }
  const hidden = [
    function* () {}, async function () {}, async function* () {},
    (function* () {})(), (async function* () {})(),
    [][Symbol.iterator](), new Map().entries(), new Set().values(), ''[Symbol.iterator](), 'a'.matchAll(/a/g),
  ];
  for (const g of globals) lock(g);
  for (const h of hidden) lock(h);
  seen.clear();

  // --- per-rule entry points ----------------------------------------------------------------
  return function install(ns) {
    const onMessage = ns.onMessage;
    const onTimer = ns.onTimer;
    const onEvent = ns.onEvent;
    const handlers = (typeof onMessage === 'function' ? 'm' : '') + (typeof onTimer === 'function' ? 't' : '') + (typeof onEvent === 'function' ? 'e' : '');
    if (handlers === '') throw new TypeError('a rule must export a function onMessage, onTimer or onEvent');

    let generation = 0;
    let pending = 0;
    let failure;
    let last;

    function describe(e) {
      try {
        if (e instanceof ErrorCtor) {
          return [StringCtor(e.name).slice(0, 200), StringCtor(e.message).slice(0, 1000), typeof e.stack === 'string' ? e.stack.slice(0, 2000) : ''];
        }
        return ['Error', ('uncaught ' + StringCtor(e)).slice(0, 1000), ''];
      } catch {
        return ['Error', 'uncaught exception that cannot be printed', ''];
      }
    }
    function fail(e) {
      return stringify({ x: describe(e) });
    }
    function done() {
      let r = null;
      if (last !== undefined) {
        const s = stringify(last);
        if (typeof s === 'string') r = s;
      }
      // out stays as it is: finish() may serialize it again after the jobs the host ran.
      return stringify({ e: out, r });
    }
    function track(promise, isLast) {
      const mine = generation;
      pending++;
      apply(promiseThen, promise, [
        (v) => { if (mine !== generation) return; pending--; if (isLast) last = v; },
        (e) => { if (mine !== generation) return; pending--; if (failure === undefined) failure = [e]; },
      ]);
    }

    function batch(json) {
      const b = parse(json);
      generation++;
      out = [];
      overlay = new MapCtor();
      overlayBytes = 0;
      pending = 0;
      failure = undefined;
      last = undefined;
      batchNow = b.n;
      try {
        const inputs = b.i;
        const n = inputs.length;
        for (let k = 0; k < n; k++) {
          const input = inputs[k];
          published = 0;
          logged = 0;
          let r;
          if (input[0] === 0) r = onMessage({ topic: input[1], payload: input[2] });
          else if (input[0] === 1) r = onTimer({ at: input[1] });
          else r = onEvent(input[1]);
          if (r instanceof PromiseCtor) track(r, k === n - 1);
          else if (k === n - 1) last = r;
        }
        return pending > 0 ? '' : done();
      } catch (e) {
        // Kept for finish(): the host still runs the jobs this batch queued, and must then get
        // this error, not a success.
        failure = [e];
        return fail(e);
      }
    }

    function finish() {
      try {
        if (failure !== undefined) return fail(failure[0]);
        if (pending > 0) return fail(new ErrorCtor('an async handler never settled (it awaits something that never resolves)'));
        return done();
      } catch (e) {
        return fail(e);
      }
    }

    return [batch, finish, handlers];
  };
})`
