// convert: republishes readings converted to another unit.
//
// A reading on /A/readings/<path...>/<unit>, payload a number (20) or an object
// ({"value": 20, "ts": 1700000000}), is republished on /A/converted/<path...>/<target> with the
// value converted: a number stays a number; an object keeps its other fields and gets
// "value" and "unit" replaced. The target is DEFAULT_TARGET[unit] (C -> F, kPa -> psi, ...) or
// the object's "to". Values keep 6 significant digits.
//   /A/readings/greenhouse/t1/C  20                 -> /A/converted/greenhouse/t1/F  68
//   /A/readings/tank/kPa         {"value": 101.325} -> /A/converted/tank/psi  {"value":14.6959,"unit":"psi"}
//
// Any message, e.g. through /A/run/convert, may also ask: {"value": 100, "unit": "kPa", "to": "bar"}
// returns {"value": 1, "unit": "bar"}; only messages on readings/... are republished.
//
// Units (case-sensitive): temperature C F K; pressure Pa hPa kPa bar psi inHg mmHg;
// speed mps kmh mph kn; length mm cm m km in ft yd mi; mass g kg oz lb; volume mL L gal.
//
// Bad input (not a number, unknown unit, units of different kinds) logs a warning, publishes
// nothing and returns {"error": "..."}.

const SIGNIFICANT_DIGITS = 6

/** unit -> [kind, factor, offset]: value in the kind's base unit = value * factor + offset. */
const UNITS = {
  K: ['temperature', 1, 0],
  C: ['temperature', 1, 273.15],
  F: ['temperature', 5 / 9, 273.15 - (32 * 5) / 9],
  Pa: ['pressure', 1, 0],
  hPa: ['pressure', 100, 0],
  kPa: ['pressure', 1000, 0],
  bar: ['pressure', 100000, 0],
  psi: ['pressure', 6894.757293168361, 0],
  inHg: ['pressure', 3386.389, 0],
  mmHg: ['pressure', 133.322387415, 0],
  mps: ['speed', 1, 0],
  kmh: ['speed', 1 / 3.6, 0],
  mph: ['speed', 0.44704, 0],
  kn: ['speed', 1852 / 3600, 0],
  mm: ['length', 0.001, 0],
  cm: ['length', 0.01, 0],
  m: ['length', 1, 0],
  km: ['length', 1000, 0],
  in: ['length', 0.0254, 0],
  ft: ['length', 0.3048, 0],
  yd: ['length', 0.9144, 0],
  mi: ['length', 1609.344, 0],
  g: ['mass', 0.001, 0],
  kg: ['mass', 1, 0],
  oz: ['mass', 0.028349523125, 0],
  lb: ['mass', 0.45359237, 0],
  mL: ['volume', 0.001, 0],
  L: ['volume', 1, 0],
  gal: ['volume', 3.785411784, 0],
}

const DEFAULT_TARGET = {
  C: 'F',
  F: 'C',
  K: 'C',
  Pa: 'psi',
  hPa: 'inHg',
  kPa: 'psi',
  bar: 'psi',
  psi: 'kPa',
  inHg: 'hPa',
  mmHg: 'hPa',
  mps: 'kmh',
  kmh: 'mph',
  mph: 'kmh',
  kn: 'kmh',
  mm: 'in',
  cm: 'in',
  m: 'ft',
  km: 'mi',
  in: 'cm',
  ft: 'm',
  yd: 'm',
  mi: 'km',
  g: 'oz',
  kg: 'lb',
  oz: 'g',
  lb: 'kg',
  mL: 'oz',
  L: 'gal',
  gal: 'L',
}

function unitOf(name) {
  return typeof name === 'string' && Object.hasOwn(UNITS, name) ? UNITS[name] : undefined
}

function bad(why) {
  log.warn(`convert: ${why}`)
  return { error: why }
}

export function onMessage(msg) {
  const levels = msg.topic.startsWith('/') ? msg.topic.split('/').slice(2) : msg.topic.split('/')
  const isReading = levels[0] === 'readings' && levels.length >= 2
  const topicUnit = isReading ? levels[levels.length - 1] : undefined

  let body
  try {
    body = JSON.parse(msg.payload)
  } catch {
    return bad(`${msg.topic}: the payload is not JSON (a number, or {"value": <number>})`)
  }
  const isObject = typeof body === 'object' && body !== null && !Array.isArray(body)
  const value = typeof body === 'number' ? body : isObject ? body.value : undefined
  if (typeof value !== 'number' || !Number.isFinite(value)) return bad(`${msg.topic}: no number (a number, or {"value": <number>})`)

  const from = isObject && body.unit !== undefined ? body.unit : topicUnit
  if (from === undefined) return bad(`${msg.topic}: no unit (publish to readings/.../<unit> or give "unit")`)
  if (topicUnit !== undefined && from !== topicUnit) return bad(`${msg.topic}: "unit" ${JSON.stringify(from)} is not the topic's unit "${topicUnit}"`)
  const source = unitOf(from)
  if (source === undefined) return bad(`${msg.topic}: unknown unit ${JSON.stringify(from)}`)
  const to = isObject && body.to !== undefined ? body.to : DEFAULT_TARGET[from]
  const target = unitOf(to)
  if (target === undefined) return bad(`${msg.topic}: unknown target unit ${JSON.stringify(to)}`)
  if (target[0] !== source[0]) return bad(`${msg.topic}: cannot convert ${source[0]} (${from}) to ${target[0]} (${to})`)

  const base = value * source[1] + source[2]
  const converted = Number(((base - target[2]) / target[1]).toPrecision(SIGNIFICANT_DIGITS))
  if (!Number.isFinite(converted)) return bad(`${msg.topic}: ${value} ${from} is out of range`)

  if (isReading) {
    const topic = ['converted', ...levels.slice(1, -1), to].join('/')
    if (isObject) {
      const out = { ...body, value: converted, unit: to }
      delete out.to
      publish(topic, out)
    } else publish(topic, converted)
  }
  return { value: converted, unit: to }
}
