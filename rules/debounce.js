// debounce: forwards a value only once it has stayed the same for STABLE_MS.
//
// A contact, button or level sensor that chatters publishes on /A/raw/<path...>; the settled
// value is republished on /A/stable/<path...> (qos 1, retained), and only when it differs from
// the last value forwarded there. The payload is compared as text and forwarded as is.
//
//   t=0     raw/door  open
//   t=200   raw/door  closed      (bounce: the clock starts again)
//   t=300   raw/door  open
//   t=1300  (timer)               -> stable/door  open   (open since t=300, for 1000 ms)
//
// A value settles when a message repeats it STABLE_MS or more after it first came, or at the
// first timer tick (manifest: every 0.5 s) after that, whichever is first; a value that changes
// back to the last forwarded one before settling forwards nothing.
// Through /A/run/debounce, give the path: {"path": "door", "value": "open"}.
//
// kv: "debounce:<path>" = {"v": value, "since": ms, "sent": bool, "out": last forwarded value},
// "debounce:pending" = the paths waiting to settle (at most MAX_PENDING; past that a path
// settles only when its value is repeated).
//
// Bad input (an empty path, a path or value too long, no path through run) logs a warning,
// publishes nothing and returns {"error": "..."}.

const STABLE_MS = 1000
const MAX_PENDING = 200
/** Forwards per timer tick at most (the manifest allows 100 publishes per call); the rest wait a tick. */
const MAX_FORWARDS_PER_TICK = 50
const MAX_PATH = 200
const MAX_VALUE = 4096
const KEY = 'debounce:'
const PENDING_KEY = 'debounce:pending'

function bad(why) {
  log.warn(`debounce: ${why}`)
  return { error: why }
}

function readJson(key) {
  const text = kv.get(key)
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function pendingList() {
  const list = readJson(PENDING_KEY)
  return Array.isArray(list) ? list.filter((p) => typeof p === 'string') : []
}

function savePending(list) {
  if (list.length === 0) kv.delete(PENDING_KEY)
  else kv.set(PENDING_KEY, JSON.stringify(list))
}

function forward(path, state) {
  if (state.v !== state.out) publish(`stable/${path}`, state.v, { qos: 1, retain: true })
  const forwarded = state.v !== state.out
  state.sent = true
  state.out = state.v
  kv.set(KEY + path, JSON.stringify(state))
  return forwarded
}

export function onMessage(msg) {
  const levels = msg.topic.startsWith('/') ? msg.topic.split('/').slice(2) : msg.topic.split('/')
  let path
  let value
  if (levels[0] === 'raw') {
    path = levels.slice(1).join('/')
    value = msg.payload
  } else {
    let body
    try {
      body = JSON.parse(msg.payload)
    } catch {
      return bad(`${msg.topic}: expected {"path": ..., "value": ...} (or publish to raw/<path>)`)
    }
    path = body?.path
    value = typeof body?.value === 'number' || typeof body?.value === 'boolean' ? String(body.value) : body?.value
    if (typeof path !== 'string' || typeof value !== 'string') return bad(`${msg.topic}: expected {"path": "<path>", "value": "<value>"}`)
  }
  if (path === '' || path.split('/').includes('')) return bad(`${msg.topic}: empty path level`)
  if (path.length > MAX_PATH) return bad(`${msg.topic}: the path is longer than ${MAX_PATH} characters`)
  if (value.length > MAX_VALUE) return bad(`${path}: the value is longer than ${MAX_VALUE} characters`)

  const t = now()
  const known = readJson(KEY + path)
  const state = typeof known === 'object' && known !== null ? known : {}
  if (state.v !== value) {
    // A new value: it has to stay for STABLE_MS, unless it is what was forwarded already.
    state.v = value
    state.since = t
    state.sent = value === state.out
    kv.set(KEY + path, JSON.stringify(state))
    const pending = pendingList()
    const listed = pending.includes(path)
    if (!state.sent && !listed && pending.length < MAX_PENDING) savePending([...pending, path])
    if (state.sent && listed) savePending(pending.filter((p) => p !== path))
    return { path, state: state.sent ? 'unchanged' : 'settling' }
  }
  if (!state.sent && t - state.since >= STABLE_MS) {
    forward(path, state)
    const pending = pendingList()
    if (pending.includes(path)) savePending(pending.filter((p) => p !== path))
    return { path, state: 'forwarded' }
  }
  return { path, state: state.sent ? 'unchanged' : 'settling' }
}

export function onTimer() {
  const t = now()
  const pending = pendingList()
  const waiting = []
  const forwarded = []
  for (const path of pending) {
    const state = readJson(KEY + path)
    if (typeof state !== 'object' || state === null || state.sent) continue
    if (t - state.since < STABLE_MS || forwarded.length >= MAX_FORWARDS_PER_TICK) waiting.push(path)
    else if (forward(path, state)) forwarded.push(path)
  }
  if (waiting.length !== pending.length) savePending(waiting)
  return { forwarded, waiting: waiting.length }
}
