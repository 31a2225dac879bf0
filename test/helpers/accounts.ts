import type { IClientOptions, MqttClient } from 'mqtt'
import mqtt from 'mqtt'
import { hashPassword } from '../../src/auth/password.js'
import { type StartOptions, startBroker, type TestBroker } from './broker.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface AccountsBroker extends TestBroker {
  /** Adds an account (and applies it at once, as the reload after a CLI change would). */
  addAccount(id: string, password: string, options?: { admin?: boolean; enabled?: boolean }): Promise<void>
  grant(owner: string, grantee: string, filter: string, rights: { publish?: boolean; subscribe?: boolean }): void
  revoke(owner: string, grantee: string, filter: string, rights: { publish?: boolean; subscribe?: boolean }): void
  /** Applies changes written straight to the store. */
  reload(): void
}

type Overrides = Parameters<typeof startBroker>[1]

/** A real perch in accounts mode. */
export async function startAccountsBroker(t: Teardown, overrides: Overrides = {}, options: StartOptions = {}): Promise<AccountsBroker> {
  const b = await startBroker(t, { ...overrides, auth: { mode: 'accounts', ...overrides?.auth } }, options)
  const service = b.app.accounts
  if (service === undefined) throw new Error('accounts mode did not start its account service')
  const must = <T>(r: { ok: true; value: T } | { ok: false; error: string }): T => {
    if (!r.ok) throw new Error(r.error)
    return r.value
  }
  const rights = (r: { publish?: boolean; subscribe?: boolean }) => ({ publish: r.publish === true, subscribe: r.subscribe === true })
  return {
    ...b,
    async addAccount(id, password, o = {}) {
      must(service.store.addAccount(id, await hashPassword(password), o.admin === true))
      if (o.enabled === false) must(service.store.setEnabled(id, false))
      service.reload('test')
    },
    grant(owner, grantee, filter, r) {
      must(service.store.addGrant(owner, grantee, filter, rights(r)))
      service.reload('test')
    },
    revoke(owner, grantee, filter, r) {
      must(service.store.removeGrant(owner, grantee, filter, rights(r)))
      service.reload('test')
    },
    reload() {
      service.reload('test')
    },
  }
}

/** The CONNACK reason code (v5) or return code (3.1.1) a refused connection got; 0 when accepted. */
export function connackCode(url: string, options: IClientOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const c: MqttClient = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
    c.on('error', (e) => {
      c.end(true)
      const code = (e as { code?: unknown }).code
      if (typeof code === 'number') resolve(code)
      else reject(e)
    })
    c.on('connect', () => {
      c.end(true)
      resolve(0)
    })
    c.on('close', () => setTimeout(() => reject(new Error('closed without CONNACK')), 100))
  })
}

/** The SUBACK codes for `filters`, in order (MQTT.js rejects when any is a failure). */
export async function subackCodes(client: MqttClient, filters: string | string[], qos: 0 | 1 | 2 = 1): Promise<number[]> {
  const list = Array.isArray(filters) ? filters : [filters]
  const map = Object.fromEntries(list.map((f) => [f, { qos }]))
  try {
    const granted = await client.subscribeAsync(map)
    return granted.map((g) => g.qos)
  } catch (e) {
    const packet = (e as { packet?: { granted?: unknown[] } }).packet
    if (packet?.granted === undefined) throw e
    return packet.granted.map((g) => (typeof g === 'number' ? g : ((g as { qos: number }).qos ?? -1)))
  }
}

/** The v5 PUBACK reason code of a QoS 1 publish; 0 for success. */
export async function pubackCode(client: MqttClient, topic: string, payload: string, opts: Record<string, unknown> = {}): Promise<number> {
  try {
    const packet = (await client.publishAsync(topic, payload, { qos: 1, ...opts })) as { reasonCode?: number } | undefined
    return packet?.reasonCode ?? 0
  } catch (e) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'number') return code
    throw e
  }
}
