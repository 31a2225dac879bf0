// Graph requests over MQTT and a perch with accounts, rules and the HTTP port, for graph tests.
import type { MqttClient } from 'mqtt'
import type { Test } from 'tap'
import { type AccountsBroker, startAccountsBroker } from './accounts.js'
import { connectClient } from './clients.js'

/** The reference's functions, in JavaScript: int(x), then x ** 2. */
export const IDF_FUNC = 'function run(x) { return Math.trunc(Number(x)) }\n'
export const JOIN_FUNC = 'function run(x) { return x ** 2 }\n'

let requests = 0
/** Publishes a request and waits for the answer with its id on <topic>/result. */
export async function request(client: MqttClient, topic: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const id = `r${++requests}`
  await client.subscribeAsync(`${topic}/result`, { qos: 1 })
  const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(body)} on ${topic}/result`)), 15_000)
    const on = (topic_: string, payload: Buffer): void => {
      if (topic_ !== `${topic}/result`) return
      const parsed = JSON.parse(payload.toString()) as Record<string, unknown>
      // Answers that echo no id (rule pushes) are taken as they come.
      if (parsed.id !== undefined && parsed.id !== id) return
      clearTimeout(timer)
      client.off('message', on)
      resolve(parsed)
    }
    client.on('message', on)
  })
  await client.publishAsync(topic, JSON.stringify({ ...body, id }), { qos: 1 })
  return answer
}

export async function graphBroker(t: Test): Promise<{ b: AccountsBroker; httpPort: number; admin: MqttClient }> {
  const b = await startAccountsBroker(t, { rules: { enabled: true }, graphs: { enabled: true }, http: { port: 0, host: '127.0.0.1' } })
  await b.addAccount('A', 'pw-A')
  const httpPort = b.app.metrics?.port
  if (httpPort === undefined) throw new Error('no HTTP port')
  const admin = await connectClient(t, b.url, { username: 'A', password: 'pw-A', protocolVersion: 5 })
  return { b, httpPort, admin }
}

