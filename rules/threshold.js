// threshold: alerts when a sensor's reading crosses a threshold, once per crossing, with
// hysteresis so a reading that hovers around the threshold does not flap.
//
// Readings: /A/sensors/<sensor>, payload a number (31.5) or an object {"value": 31.5, ...}.
// Through /A/run/threshold the sensor comes from the payload: {"sensor": "t1", "value": 31.5}.
//
// Thresholds per sensor: publish {"high": 30, "low": 5, "hysteresis": 1} (any of them; at least
// one of high and low) to /A/thresholds/<sensor>; they are kept in kv. An empty payload there
// drops them, and the sensor is back on DEFAULTS below.
//
// States: "normal", "high" (the reading went above high), "low" (below low). A sensor leaves
// "high" only when a reading falls below high - hysteresis, and "low" only above
// low + hysteresis. On every change of state, and only then, it publishes on alerts/<sensor>
// (qos 1, retained, so a dashboard that subscribes later sees the current state):
//   {"sensor": "t1", "state": "high", "value": 31.5, "threshold": 30, "at": <now()>}
// ("threshold" is the limit that was crossed: high or low, or for "normal" the one left behind.)
//
// kv: "threshold:config:<sensor>" (JSON thresholds), "threshold:state:<sensor>" ("high" or "low";
// absent means "normal").
//
// Bad input (not a number, no sensor, bad thresholds) logs a warning, publishes nothing and
// returns {"error": "..."}.

const DEFAULTS = { high: 30, hysteresis: 1 }
const SENSOR = /^[A-Za-z0-9_.:-]{1,64}$/
const NAME_RULE = 'letters, digits, _ . : -, at most 64'
const CONFIG_KEY = 'threshold:config:'
const STATE_KEY = 'threshold:state:'

export function onMessage(msg) {
  const levels = relativeLevels(msg.topic)
  const topicSensor = levels.length === 2 ? levels[1] : undefined
  if (levels[0] === 'thresholds' && topicSensor !== undefined) return configure(topicSensor, msg.payload)
  return reading(levels[0] === 'sensors' ? topicSensor : undefined, msg.payload, msg.topic)
}

/** The levels of an account topic below /<account>/. */
function relativeLevels(topic) {
  return topic.startsWith('/') ? topic.split('/').slice(2) : topic.split('/')
}

function bad(why) {
  log.warn(`threshold: ${why}`)
  return { error: why }
}

function parseJson(text) {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function configure(sensor, payload) {
  if (!SENSOR.test(sensor)) return bad(`"${sensor}" is not a sensor name (${NAME_RULE})`)
  if (payload === '') {
    kv.delete(CONFIG_KEY + sensor)
    return { sensor, config: DEFAULTS }
  }
  const body = parseJson(payload)
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad(`thresholds for ${sensor}: expected {"high", "low", "hysteresis"}`)
  const config = {}
  for (const key of ['high', 'low', 'hysteresis']) {
    const v = body[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v)) return bad(`thresholds for ${sensor}: "${key}" must be a number`)
    config[key] = v
  }
  if (config.high === undefined && config.low === undefined) return bad(`thresholds for ${sensor}: give "high", "low" or both`)
  if ((config.hysteresis ?? 0) < 0) return bad(`thresholds for ${sensor}: "hysteresis" must not be negative`)
  if (config.high !== undefined && config.low !== undefined && config.low >= config.high) {
    return bad(`thresholds for ${sensor}: "low" must be below "high"`)
  }
  kv.set(CONFIG_KEY + sensor, JSON.stringify(config))
  return { sensor, config }
}

function thresholdsOf(sensor) {
  const stored = kv.get(CONFIG_KEY + sensor)
  const config = stored === undefined ? undefined : parseJson(stored)
  const c = typeof config === 'object' && config !== null ? config : DEFAULTS
  return { high: c.high, low: c.low, hysteresis: c.hysteresis ?? 0 }
}

function reading(topicSensor, payload, topic) {
  const body = parseJson(payload)
  const value = typeof body === 'number' ? body : typeof body === 'object' && body !== null ? body.value : undefined
  const sensor = topicSensor ?? (typeof body === 'object' && body !== null ? body.sensor : undefined)
  if (typeof sensor !== 'string') return bad(`no sensor name in ${topic} (publish to sensors/<sensor> or give "sensor")`)
  if (!SENSOR.test(sensor)) return bad(`"${sensor}" is not a sensor name (${NAME_RULE})`)
  if (typeof value !== 'number' || !Number.isFinite(value)) return bad(`${sensor}: the reading is not a number (a number, or {"value": <number>})`)

  const { high, low, hysteresis } = thresholdsOf(sensor)
  const before = kv.get(STATE_KEY + sensor) ?? 'normal'
  let state = before
  // Leave a state only past the hysteresis band; then see whether the reading is past the other limit.
  if (state === 'high' && (high === undefined || value < high - hysteresis)) state = 'normal'
  if (state === 'low' && (low === undefined || value > low + hysteresis)) state = 'normal'
  if (state === 'normal') {
    if (high !== undefined && value > high) state = 'high'
    else if (low !== undefined && value < low) state = 'low'
  }

  const changed = state !== before
  if (changed) {
    if (state === 'normal') kv.delete(STATE_KEY + sensor)
    else kv.set(STATE_KEY + sensor, state)
    const threshold = state === 'high' || (state === 'normal' && before === 'high') ? high : low
    publish(`alerts/${sensor}`, { sensor, state, value, threshold, at: now() }, { qos: 1, retain: true })
  }
  return { sensor, value, state, alert: changed }
}
