import type { Packet } from '../protocol/packets.js'
import { RC } from '../protocol/reason-codes.js'
import type { Connection } from './connection.js'
import { handleAuth } from './handlers/auth.js'
import { handleConnect } from './handlers/connect.js'
import { handleDisconnect } from './handlers/disconnect.js'
import { handlePingreq } from './handlers/pingreq.js'
import { handlePuback } from './handlers/puback.js'
import { handlePubcomp } from './handlers/pubcomp.js'
import { handlePublish } from './handlers/publish.js'
import { handlePubrec } from './handlers/pubrec.js'
import { handlePubrel } from './handlers/pubrel.js'
import { handleSubscribe } from './handlers/subscribe.js'
import { handleUnsubscribe } from './handlers/unsubscribe.js'

/** Routes each packet to its handler; anything before CONNECT but CONNECT is a protocol error. */
export function dispatch(c: Connection, p: Packet): void {
  if (p.cmd === 'connect') {
    // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
    if (c.state !== 'new') return c.fail(RC.PROTOCOL_ERROR, '[MQTT-3.1.0-2] second CONNECT')
    return handleConnect(c, p)
  }
  // [MQTT-3.1.0-1] the first packet must be CONNECT.
  if (c.state !== 'connected') return c.fail(RC.PROTOCOL_ERROR, `[MQTT-3.1.0-1] ${p.cmd.toUpperCase()} before CONNECT`)
  switch (p.cmd) {
    case 'publish':
      return handlePublish(c, p)
    case 'puback':
      return handlePuback(c, p)
    case 'pubrec':
      return handlePubrec(c, p)
    case 'pubrel':
      return handlePubrel(c, p)
    case 'pubcomp':
      return handlePubcomp(c, p)
    case 'subscribe':
      return handleSubscribe(c, p)
    case 'unsubscribe':
      return handleUnsubscribe(c, p)
    case 'pingreq':
      return handlePingreq(c, p)
    case 'disconnect':
      return handleDisconnect(c, p)
    case 'auth':
      return handleAuth(c, p)
    default:
      return c.fail(RC.PROTOCOL_ERROR, `${p.cmd.toUpperCase()} is sent by servers, not clients`)
  }
}
