import type { Server as HttpServer } from 'node:http'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { WebSocketServer } from 'ws'
import { RC } from '../protocol/reason-codes.js'
import { Connection, type ConnectionMeta } from './connection.js'
import type { TransportServices } from './context.js'

export interface TlsFiles {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer | undefined
  /** Require a client certificate signed by `ca`; its CN is given to authentication. */
  readonly requireClientCert: boolean
}

export interface ListenerSpec {
  readonly name: string
  readonly kind: 'tcp' | 'tls' | 'ws'
  readonly host: string
  readonly port: number
  readonly tls: TlsFiles | undefined
  readonly path: string
}

export interface RunningListener {
  readonly spec: ListenerSpec
  readonly port: number
  close(): Promise<void>
}

/** All live connections of every listener, so shutdown can reach each one. */
export class ConnectionSet {
  readonly #connections = new Set<Connection>()
  readonly #services: TransportServices

  constructor(services: TransportServices) {
    this.#services = services
  }

  get size(): number {
    return this.#connections.size
  }

  adopt(stream: Duplex, meta: ConnectionMeta): void {
    const { limits, broker, logger } = this.#services
    // Sockets beyond the limit plus a margin for takeovers are refused before any parsing.
    if (this.#connections.size >= limits.maxConnections + Math.ceil(limits.maxConnections / 10) + 16) {
      broker.stats.refusedMaxConnections++
      logger.warn('connection.refused', { remote: meta.remoteAddress, reason: 'max connections', max: limits.maxConnections })
      stream.destroy()
      return
    }
    const c = new Connection(stream, this.#services, meta, (closed) => this.#connections.delete(closed))
    this.#connections.add(c)
  }

  /** Tells every client the server is going away (v5 DISCONNECT 0x8B) and closes it; wills stay unsent. */
  shutdown(): void {
    for (const c of [...this.#connections]) c.disconnect(RC.SERVER_SHUTTING_DOWN, 'server shutting down', false)
  }
}

export async function listen(spec: ListenerSpec, connections: ConnectionSet): Promise<RunningListener> {
  const onSocket = (socket: Socket, certificateCommonName?: string): void => {
    socket.setNoDelay(true)
    connections.adopt(socket, { listener: spec.name, remoteAddress: socket.remoteAddress ?? '', certificateCommonName })
  }
  let server: NetServer | HttpServer
  let wss: WebSocketServer | undefined
  if (spec.kind === 'tcp') {
    server = createNetServer(onSocket)
  } else if (spec.kind === 'tls') {
    // TLS and WebSocket modules load only when such a listener exists: a small board saves their memory.
    const { createServer: createTlsServer } = await import('node:tls')
    const tls = spec.tls
    if (tls === undefined) throw new Error(`listener ${spec.name}: tls needs a certificate and key`)
    server = createTlsServer(
      { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.requireClientCert, rejectUnauthorized: tls.requireClientCert },
      (socket: TLSSocket) => onSocket(socket, socket.authorized ? commonName(socket) : undefined),
    )
  } else {
    const { createServer: createHttpServer } = await import('node:http')
    const { createWebSocketStream, WebSocketServer } = await import('ws')
    const http = createHttpServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: connect with the "mqtt" subprotocol\n')
    })
    server = http
    wss = new WebSocketServer({
      server: http,
      path: spec.path,
      maxPayload: 268_435_456,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    })
    wss.on('connection', (ws, req) => {
      const stream = createWebSocketStream(ws)
      stream.on('error', () => stream.destroy())
      connections.adopt(stream, { listener: spec.name, remoteAddress: req.socket.remoteAddress ?? '', certificateCommonName: undefined })
    })
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(spec.port, spec.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : spec.port
  return {
    spec,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        wss?.close()
        server.close(() => resolve())
      }),
  }
}

function commonName(socket: TLSSocket): string | undefined {
  const cn = socket.getPeerCertificate().subject?.CN
  return typeof cn === 'string' ? cn : undefined
}
