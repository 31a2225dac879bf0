// heartbeat: publishes a heartbeat on every timer tick and reports devices that went silent.
//
// A device is seen when it publishes anything on /A/devices/<id>/... or when an MQTT client
// with client id <id> connects to the account (the broker's client.connected event); a
// client.disconnected event marks it offline. On every timer tick (manifest: every 30 s):
//   - a device seen more than SILENT_MS ago goes "silent";
//   - a device not seen for FORGET_MS is forgotten (its retained presence is cleared);
//   - heartbeat gets {"at": now, "seq": n, "alive": <count>, "silent": [ids], "offline": [ids]}.
// Every change of a device's state is published on presence/<id> (qos 1, retained):
//   {"device": "pump1", "state": "alive" | "silent" | "offline", "seen": <ms>, "at": <ms>}
// Through /A/run/heartbeat, {"device": "pump1"} marks that device as seen.
//
// kv: "heartbeat:devices" (the ids, at most MAX_DEVICES), "heartbeat:device:<id>"
// ({"seen": ms, "state": ...}), "heartbeat:seq".
//
// Bad input (an id that is not letters, digits, _ . : -; no device through run; too many
// devices) logs a warning, publishes nothing and returns {"error": "..."}.

const SILENT_MS = 120_000
const FORGET_MS = 24 * 3600_000
const MAX_DEVICES = 500
/** State changes published per tick at most (the manifest allows 100 publishes); the rest wait a tick. */
const MAX_CHANGES_PER_TICK = 50
const MAX_LISTED = 100
const ID = /^[A-Za-z0-9_.:-]{1,64}$/
const INDEX_KEY = 'heartbeat:devices'
const DEVICE_KEY = 'heartbeat:device:'
const SEQ_KEY = 'heartbeat:seq'

function bad(why) {
  log.warn(`heartbeat: ${why}`)
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

function devices() {
  const ids = readJson(INDEX_KEY)
  return Array.isArray(ids) ? ids.filter((id) => typeof id === 'string') : []
}

function device(id) {
  const d = readJson(DEVICE_KEY + id)
  return typeof d === 'object' && d !== null && typeof d.seen === 'number' ? d : undefined
}

/** Records a device's new state; publishes it when it changed. */
function update(id, state) {
  if (!ID.test(id)) return bad(`"${id}" is not a device id (letters, digits, _ . : -, at most 64)`)
  const before = device(id)
  if (before === undefined) {
    const ids = devices()
    if (ids.length >= MAX_DEVICES) return bad(`more than ${MAX_DEVICES} devices; ${id} is not tracked`)
    kv.set(INDEX_KEY, JSON.stringify([...ids, id]))
  }
  const t = now()
  kv.set(DEVICE_KEY + id, JSON.stringify({ seen: t, state }))
  if (before?.state !== state) publish(`presence/${id}`, { device: id, state, seen: t, at: t }, { qos: 1, retain: true })
  return { device: id, state, changed: before?.state !== state }
}

export function onMessage(msg) {
  const levels = msg.topic.startsWith('/') ? msg.topic.split('/').slice(2) : msg.topic.split('/')
  if (levels[0] === 'devices' && levels.length >= 2) return update(levels[1], 'alive')
  let body
  try {
    body = JSON.parse(msg.payload)
  } catch {
    body = undefined
  }
  if (typeof body?.device !== 'string') return bad(`${msg.topic}: expected {"device": "<id>"} (or publish to devices/<id>/...)`)
  return update(body.device, 'alive')
}

export function onEvent(e) {
  if (typeof e?.clientId !== 'string') return bad('an event without a client id')
  if (e.type === 'client.connected') return update(e.clientId, 'alive')
  if (e.type === 'client.disconnected') return update(e.clientId, 'offline')
  return undefined
}

export function onTimer() {
  const t = now()
  const ids = devices()
  const kept = []
  const silent = []
  const offline = []
  let alive = 0
  let changes = 0
  for (const id of ids) {
    const d = device(id)
    if (d === undefined) continue // lost its record: drop it from the index
    const quiet = t - d.seen
    if (quiet > FORGET_MS && changes < MAX_CHANGES_PER_TICK) {
      changes++
      kv.delete(DEVICE_KEY + id)
      publish(`presence/${id}`, '', { qos: 1, retain: true }) // clears the retained presence
      continue
    }
    kept.push(id)
    if (d.state === 'alive' && quiet > SILENT_MS && changes < MAX_CHANGES_PER_TICK) {
      changes++
      d.state = 'silent'
      kv.set(DEVICE_KEY + id, JSON.stringify(d))
      publish(`presence/${id}`, { device: id, state: 'silent', seen: d.seen, at: t }, { qos: 1, retain: true })
    }
    if (d.state === 'alive') alive++
    else if (d.state === 'silent' && silent.length < MAX_LISTED) silent.push(id)
    else if (d.state === 'offline' && offline.length < MAX_LISTED) offline.push(id)
  }
  if (kept.length !== ids.length) {
    if (kept.length === 0) kv.delete(INDEX_KEY)
    else kv.set(INDEX_KEY, JSON.stringify(kept))
  }
  const seq = (Number(kv.get(SEQ_KEY)) || 0) + 1
  kv.set(SEQ_KEY, String(seq))
  const beat = { at: t, seq, alive, silent, offline }
  publish('heartbeat', beat)
  return beat
}
