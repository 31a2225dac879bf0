import { type AuthResult, type ClientInfo, clientOf } from '../../broker/hooks.js'
import { LOCAL_CLIENT_PREFIX } from '../../broker/local-client.js'
import type { ConnackPacket, ConnectPacket, ProtocolVersion } from '../../protocol/packets.js'
import { connackCodeFor, RC } from '../../protocol/reason-codes.js'
import { checkConnect } from '../../protocol/validate.js'
import { NEVER_EXPIRES } from '../../session/session.js'
import { validTopicName } from '../../topic/validate.js'
import type { Connection } from '../connection.js'
import { buildMessage } from './publish.js'

type ConnackProperties = NonNullable<ConnackPacket['properties']>

export function handleConnect(c: Connection, p: ConnectPacket): void {
  const version: ProtocolVersion = p.protocolVersion ?? 4
  c.setVersion(version)
  const { broker, limits, logger } = c.services
  const refuse = (reasonCode: number, reason: string): void => {
    logger.info('connect.refused', { clientId: p.clientId, remote: c.remoteAddress, reasonCode, reason })
    c.send(connack(version, false, reasonCode, version === 5 ? { reasonString: reason } : undefined))
    c.refuse()
  }
  const invalid = checkConnect(p)
  if (invalid !== null) return refuse(invalid.reasonCode, invalid.message)
  // Flag combinations the protocol forbids (mqtt-packet lets them through): 3.x closes without
  // CONNACK [MQTT-3.1.4-1]; a v5 client is told why with CONNACK 0x81.
  const malformed =
    p.will !== undefined && (p.will.qos ?? 0) > 2
      ? '[MQTT-3.1.2-14] Will QoS 3'
      : version !== 5 && p.password !== undefined && p.username === undefined
        ? '[MQTT-3.1.2-22] password without a user name'
        : undefined
  if (malformed !== undefined) return version === 5 ? refuse(RC.MALFORMED_PACKET, malformed) : c.fail(RC.MALFORMED_PACKET, malformed)

  const keepalive = effectiveKeepalive(version, p.keepalive ?? 0, limits.maxKeepalive)
  if (keepalive === undefined) {
    return refuse(RC.CLIENT_IDENTIFIER_NOT_VALID, `keep alive ${p.keepalive ?? 0}s not within the maximum of ${limits.maxKeepalive}s`)
  }
  if (p.will !== undefined) {
    const bad = validTopicName(p.will.topic, limits.maxTopicLength, limits.maxTopicLevels)
    if (bad !== null) return refuse(RC.TOPIC_NAME_INVALID, `will topic: ${bad}`)
  }
  if (p.clientId.startsWith(LOCAL_CLIENT_PREFIX)) return refuse(RC.CLIENT_IDENTIFIER_NOT_VALID, `client ids starting with ${LOCAL_CLIENT_PREFIX} are perch's own`)
  const assigned = p.clientId.length === 0
  const clientId = assigned ? c.services.newClientId() : p.clientId
  const takeover = broker.hasLive(clientId)
  if (broker.liveCount >= limits.maxConnections && !takeover) {
    broker.stats.refusedMaxConnections++
    return refuse(RC.SERVER_BUSY, `connection limit of ${limits.maxConnections} reached`)
  }

  c.beginAuthentication()
  const finish = (result: AuthResult): void => {
    if (c.state !== 'authenticating') return
    if (!result.ok) {
      broker.stats.refusedAuth++
      broker.events.emit({
        type: 'auth.failed',
        clientId,
        username: p.username,
        account: result.account,
        remoteAddress: c.remoteAddress,
        reasonCode: result.reasonCode,
        reason: result.reason,
      })
      return refuse(result.reasonCode, result.reason)
    }
    const client = clientOf(result.identity, { clientId, remoteAddress: c.remoteAddress, protocolVersion: version, listener: c.listener })
    if (p.will !== undefined && !broker.hooks.authorizePublish(client, p.will.topic)) {
      broker.denied(client, 'will', p.will.topic)
      return refuse(RC.NOT_AUTHORIZED, `the will topic ${p.will.topic} is outside this client's rights`)
    }
    accept(c, p, client, keepalive, assigned)
  }
  const pending = broker.hooks.authenticate({
    clientId,
    username: p.username,
    password: p.password,
    remoteAddress: c.remoteAddress,
    protocolVersion: version,
    listener: c.listener,
    certificateCommonName: c.certificateCommonName,
  })
  if (pending instanceof Promise) {
    pending.then(finish, (e: unknown) => {
      logger.error('auth.crash', { clientId, error: e instanceof Error ? e.message : String(e) })
      finish({ ok: false, reasonCode: RC.UNSPECIFIED_ERROR, reason: 'authentication failed' })
    })
  } else finish(pending)
}

function accept(c: Connection, p: ConnectPacket, client: ClientInfo, keepalive: number, assigned: boolean): void {
  const { broker, limits, logger, clock } = c.services
  const version = client.protocolVersion
  const requestedExpiry = version === 5 ? (p.properties?.sessionExpiryInterval ?? 0) : p.clean === false ? NEVER_EXPIRES : 0
  const cleanStart = p.clean !== false
  const will =
    p.will === undefined
      ? undefined
      : {
          message: buildMessage(
            { topic: p.will.topic, payload: p.will.payload, qos: p.will.qos ?? 0, retain: p.will.retain ?? false, properties: p.will.properties },
            client.clientId,
            clock,
          ),
          delaySeconds: version === 5 ? (p.will.properties?.willDelayInterval ?? 0) : 0,
          expirySeconds: version === 5 ? p.will.properties?.messageExpiryInterval || undefined : undefined,
        }
  c.identify(client)
  const opened = broker.openSession(c, { cleanStart, expiryInterval: requestedExpiry, will })
  c.accept({
    client,
    session: opened.session,
    keepalive,
    clientReceiveMaximum: p.properties?.receiveMaximum ?? 65_535,
    clientMaxPacketSize: p.properties?.maximumPacketSize ?? Number.POSITIVE_INFINITY,
    clientTopicAliasMaximum: version === 5 ? (p.properties?.topicAliasMaximum ?? 0) : 0,
  })
  broker.stats.connectionsTotal++
  broker.stats.connectionsMax = Math.max(broker.stats.connectionsMax, broker.liveCount)
  let props: ConnackProperties | undefined
  if (version === 5) {
    props = {
      receiveMaximum: limits.receiveMaximum,
      maximumPacketSize: limits.maxPacketSize,
      topicAliasMaximum: limits.topicAliasMaximum,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: true,
      sharedSubscriptionAvailable: true,
    }
    if (assigned) props.assignedClientIdentifier = client.clientId
    if (keepalive !== (p.keepalive ?? 0)) props.serverKeepAlive = keepalive
    if (opened.expiryInterval !== requestedExpiry) props.sessionExpiryInterval = opened.expiryInterval
  }
  // [MQTT-3.2.2-2] session present only when a session was resumed.
  c.send(connack(version, opened.sessionPresent, RC.SUCCESS, props))
  logger.info('client.connected', {
    clientId: client.clientId,
    username: client.username,
    remote: client.remoteAddress,
    listener: client.listener,
    version,
    sessionPresent: opened.sessionPresent,
    keepalive,
  })
  broker.events.emit({ type: 'client.connected', client, sessionPresent: opened.sessionPresent })
  c.resume()
}

function connack(version: ProtocolVersion, sessionPresent: boolean, reasonCode: number, properties: ConnackProperties | undefined): ConnackPacket {
  const code = connackCodeFor(version, reasonCode)
  // MQTT 3.1 has no Session Present flag: its acknowledge-flags byte is reserved (as Mosquitto sends it).
  const packet: ConnackPacket = { cmd: 'connack', sessionPresent: reasonCode === RC.SUCCESS && sessionPresent && version !== 3 }
  if (version === 5) {
    packet.reasonCode = code
    if (properties !== undefined) packet.properties = properties
  } else packet.returnCode = code
  return packet
}

/**
 * The keepalive the server will enforce; undefined when a 3.x client asks for more than the
 * maximum (it cannot be told the server's value, so it is refused as Mosquitto does).
 */
function effectiveKeepalive(version: ProtocolVersion, requested: number, max: number): number | undefined {
  if (max <= 0 || max >= 65_535) return requested
  if (requested > 0 && requested <= max) return requested
  return version === 5 ? max : undefined
}
