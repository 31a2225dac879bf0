// The registration API on the local HTTP port: PUT, GET and DELETE /devices/{id}, GET /devices.
// A request logs in as an account (HTTP Basic with the account and its password, or a bearer
// JWT) and passes the same ACL as an MQTT client publishing the request on its topic.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Result } from '../core/result.js'
import { type AuthResult, type BrokerHooks, type ClientInfo, clientOf } from '../mqtt/broker/hooks.js'
import { RC } from '../mqtt/protocol/reason-codes.js'
import { describeDevice } from './model.js'
import type { RequestError } from './registry.js'
import type { DeviceGraphService } from './service.js'

export type HttpCredentials = { readonly kind: 'basic'; readonly username: string; readonly password: string } | { readonly kind: 'bearer'; readonly token: string }

/** Logs in with what the Authorization header carried, as the broker's hooks would. */
export type HttpAuthenticate = (credentials: HttpCredentials, remoteAddress: string) => Promise<AuthResult>

const MAX_BODY = 65_536
const PREFIX = '/devices'

type Reply = { status: number; body: unknown; headers?: Record<string, string> }

export class DevicesHttp {
  readonly #service: DeviceGraphService
  readonly #hooks: () => BrokerHooks
  readonly #authenticate: HttpAuthenticate

  constructor(service: DeviceGraphService, hooks: () => BrokerHooks, authenticate: HttpAuthenticate) {
    this.#service = service
    this.#hooks = hooks
    this.#authenticate = authenticate
  }

  /** Answers requests under /devices; false for any other path. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false
    const r = await this.#route(req, path)
    res.writeHead(r.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...r.headers })
    res.end(`${JSON.stringify(r.body)}\n`)
    return true
  }

  async #route(req: IncomingMessage, path: string): Promise<Reply> {
    const rest = path.slice(PREFIX.length + 1)
    if (rest.includes('/')) return error(404, `not found: ${path} (the API is /devices and /devices/{id})`)
    const id = decodeURIComponent(rest)
    const allowed = id === '' ? ['GET'] : ['GET', 'PUT', 'DELETE']
    if (!allowed.includes(req.method ?? '')) return { ...error(405, `method ${req.method ?? ''} not allowed on ${path}`), headers: { allow: allowed.join(', ') } }
    const client = await this.#login(req)
    if ('status' in client) return client
    const url = new URL(req.url ?? '/', 'http://localhost')
    const account = url.searchParams.get('account') ?? client.account
    if (account === undefined || account === '' || account.includes('/')) return error(403, 'devices belong to an account: log in as one, or name it with ?account=')
    const hooks = this.#hooks()
    if (id === '') {
      if (!hooks.canRead(client, `/${account}/devices/list/result`)) return error(403, `${client.username ?? 'this login'} may not list the devices of ${account}`)
      return { status: 200, body: { state: 'ok', devices: this.#service.store.devices(account).map(describeDevice) } }
    }
    if (req.method === 'GET') {
      const got = this.#service.registry.get(id)
      if (!got.ok) return fromError(got)
      const d = got.value
      if (!hooks.canRead(client, `/${d.account}/devices/${d.id}/state`)) return error(404, `no device ${d.id}`)
      return { status: 200, body: { state: 'ok', ...describeDevice(d) } }
    }
    const action = req.method === 'PUT' ? 'put' : 'delete'
    const topic = `/${account}/devices/${action}/${id}`
    if (!hooks.authorizePublish(client, topic)) return error(403, `${client.username ?? 'this login'} may not ${action === 'put' ? 'register' : 'remove'} devices in ${account} (no right to publish ${topic})`)
    if (action === 'delete') return fromResult(await this.#service.serialize(() => this.#service.registry.remove(account, id)))
    const body = await readBody(req)
    // The rest of a body too large is not read: the connection ends once the answer is out.
    if (!body.ok) return body.status === 413 ? { ...error(body.status, body.error), headers: { connection: 'close' } } : error(body.status, body.error)
    return fromResult(await this.#service.serialize(() => this.#service.registry.register(account, id, body.value)))
  }

  async #login(req: IncomingMessage): Promise<ClientInfo | Reply> {
    const header = req.headers.authorization ?? ''
    const challenge = { 'www-authenticate': 'Basic realm="perch", charset="UTF-8"' }
    let credentials: HttpCredentials
    const [scheme = '', value = ''] = header.split(/\s+/, 2)
    if (scheme.toLowerCase() === 'basic') {
      const text = Buffer.from(value, 'base64').toString('utf8')
      const colon = text.indexOf(':')
      if (colon < 0) return { ...error(401, 'malformed Basic credentials'), headers: challenge }
      credentials = { kind: 'basic', username: text.slice(0, colon), password: text.slice(colon + 1) }
    } else if (scheme.toLowerCase() === 'bearer' && value !== '') credentials = { kind: 'bearer', token: value }
    else return { ...error(401, 'log in with HTTP Basic (account and password) or a bearer token'), headers: challenge }
    const remoteAddress = req.socket.remoteAddress ?? ''
    const result = await this.#authenticate(credentials, remoteAddress)
    if (!result.ok) return { ...error(result.reasonCode === RC.CONNECTION_RATE_EXCEEDED ? 429 : 401, result.reason), headers: challenge }
    const { identity } = result
    return clientOf(identity, { clientId: `$perch/http/${identity.account ?? identity.username ?? 'anonymous'}`, remoteAddress, protocolVersion: 5, listener: 'http' })
  }
}

/** The /devices paths when graphs are not running: 503 with the reason, so a device app is told why. */
export function devicesUnavailable(reason: string): (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean> {
  return async (_req, res, path) => {
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false
    res.writeHead(503, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    res.end(`${JSON.stringify({ state: 'error', error: reason })}\n`)
    return true
  }
}

function error(status: number, message: string): Reply {
  return { status, body: { state: 'error', error: message } }
}

function fromError(r: { ok: false; error: RequestError }): Reply {
  return error(r.error.status, r.error.error)
}

function fromResult(r: Result<Record<string, unknown>, RequestError>): Reply {
  return r.ok ? { status: 200, body: r.value } : fromError(r)
}

/**
 * The JSON body, at most MAX_BODY bytes. Past that it answers 413 at once and discards the rest:
 * the request is never destroyed under the answer (that left the connection open and unclosable,
 * so perch's HTTP server could not stop).
 */
function readBody(req: IncomingMessage): Promise<{ ok: true; value: unknown } | { ok: false; status: 400 | 413 | 415; error: string }> {
  const type = req.headers['content-type'] ?? 'application/json'
  if (!/^application\/json\b/i.test(type)) return Promise.resolve({ ok: false, status: 415, error: `the body must be application/json, not ${type}` })
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let settled = false
    const settle = (r: { ok: true; value: unknown } | { ok: false; status: 400 | 413; error: string }): void => {
      if (settled) return
      settled = true
      req.off('data', onData)
      req.resume()
      resolve(r)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > MAX_BODY) settle({ ok: false, status: 413, error: `the body is larger than ${MAX_BODY} bytes` })
      else chunks.push(chunk)
    }
    req.on('data', onData)
    req.once('end', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      try {
        settle({ ok: true, value: JSON.parse(text) })
      } catch (e) {
        settle({ ok: false, status: 400, error: `the body is not JSON: ${e instanceof Error ? e.message : String(e)}` })
      }
    })
    req.on('error', (e) => settle({ ok: false, status: 400, error: `the body was cut off: ${e.message}` }))
    req.once('close', () => settle({ ok: false, status: 400, error: 'the body was cut off' }))
  })
}
