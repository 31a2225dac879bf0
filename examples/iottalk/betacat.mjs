// BetaCat, the reference's device application, in JavaScript with MQTT.js (npm install mqtt).
// It registers over HTTP, goes online on its uplink, and follows CONNECT and DISCONNECT on its
// downlink: it sends a random reading on its input feature every 200 ms, and prints what
// arrives on its output feature.
import { randomInt } from 'node:crypto'
import mqtt from 'mqtt'

const HTTP = process.env.PERCH_HTTP ?? 'http://localhost:9992'
const MQTT = process.env.PERCH_MQTT ?? 'mqtt://localhost:1883'
const ACCOUNT = process.env.PERCH_ACCOUNT ?? 'A'
const PASSWORD = process.env.PERCH_PASSWORD ?? ''

const betacatId = 'df682f01-7c3a-49fd-8f5f-72ce0b6e68c0'
const betacat = {
  name: 'BetaCat',
  idf_list: [['meow', ['dB']]],
  odf_list: [['meow', ['dB']]],
  accept_protos: ['mqtt'],
  profile: { model: 'AI' },
}

const response = await fetch(`${HTTP}/devices/${betacatId}`, {
  method: 'PUT',
  headers: { 'content-type': 'application/json', authorization: `Basic ${btoa(`${ACCOUNT}:${PASSWORD}`)}` },
  body: JSON.stringify(betacat),
})
if (response.status !== 200) throw new Error(`registration failed: ${response.status} ${await response.text()}`)
const { ctrl_chans: [uplinkTopic, downlinkTopic], rev } = await response.json()

const client = mqtt.connect(MQTT, {
  username: ACCOUNT,
  password: PASSWORD,
  will: { topic: uplinkTopic, payload: JSON.stringify({ state: 'offline', rev }), qos: 1, retain: true },
})

client.on('connect', () => {
  client.publish(uplinkTopic, JSON.stringify({ state: 'online', rev }), { qos: 1, retain: true })
  client.subscribe(downlinkTopic, { qos: 2 })
})

let sender
client.on('message', (topic, payload) => {
  if (topic !== downlinkTopic) {
    console.log(`${topic} ${payload}`)
    return
  }
  const signal = JSON.parse(payload.toString())
  if (signal.command === 'CONNECT' && signal.idf) {
    clearInterval(sender)
    sender = setInterval(() => client.publish(signal.topic, String(randomInt(100))), 200)
  } else if (signal.command === 'CONNECT' && signal.odf) {
    client.subscribe(signal.topic)
  } else if (signal.command === 'DISCONNECT') {
    if (signal.idf) clearInterval(sender)
    else client.unsubscribe(signal.topic)
  }
  // The answer: the signal with its state.
  client.publish(uplinkTopic, JSON.stringify({ ...signal, state: 'ok' }), { qos: 1 })
})
