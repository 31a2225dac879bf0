// How the listeners and connection limits of the config become the transport's settings.
import { readFileSync } from 'node:fs'
import { ConfigError, describeError } from '../core/errors.js'
import type { ConnectionLimits } from '../mqtt/transport/context.js'
import type { ListenerSpec } from '../mqtt/transport/listeners.js'
import type { ListenerConfig, PerchConfig } from './config.js'

export function connectionLimits(config: PerchConfig): ConnectionLimits {
  const l = config.limits
  return {
    maxPacketSize: l.maxPacketSize,
    connectTimeoutMs: l.connectTimeout * 1000,
    maxKeepalive: l.maxKeepalive,
    receiveMaximum: l.receiveMaximum,
    topicAliasMaximum: l.topicAliasMaximum,
    maxTopicLength: l.maxTopicLength,
    maxTopicLevels: l.maxTopicLevels,
    maxWriteBuffer: l.maxWriteBuffer,
    slowConsumerPolicy: l.slowConsumerPolicy,
    maxConnections: l.maxConnections,
  }
}

export function listenerSpec(l: ListenerConfig): ListenerSpec {
  return {
    name: l.name ?? `${l.kind}-${l.port}`,
    kind: l.kind,
    host: l.host ?? '127.0.0.1',
    port: l.port,
    path: l.path ?? '/mqtt',
    tls:
      l.kind === 'tls' && l.cert !== undefined && l.key !== undefined
        ? {
            cert: readPem(l.cert, 'cert'),
            key: readPem(l.key, 'key'),
            ca: l.ca === undefined ? undefined : readPem(l.ca, 'ca'),
            requireClientCert: l.requireClientCert === true,
          }
        : undefined,
  }
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (e) {
    throw new ConfigError(`tls ${what} file ${path}: ${describeError(e)}`)
  }
}
