import type { DisconnectPacket } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import type { PacketContext } from '../context.js'

export function handleDisconnect(ctx: PacketContext, p: DisconnectPacket): void {
  const expiry = ctx.version === 5 ? p.properties?.sessionExpiryInterval : undefined
  if (expiry !== undefined && expiry > 0 && ctx.session.expiryInterval === 0) {
    // MQTT 5.0 section 3.14.2.2.2: a session that was to end cannot be revived at DISCONNECT.
    ctx.fail(RC.PROTOCOL_ERROR, 'session expiry set at DISCONNECT after CONNECT gave 0 (MQTT 5.0 section 3.14.2.2.2)')
    return
  }
  // A normal DISCONNECT discards the will [MQTT-3.14.4-3]; 0x04 asks for it to be sent.
  const publishWill = ctx.version === 5 && p.reasonCode === RC.DISCONNECT_WITH_WILL
  ctx.connection.closeGracefully(publishWill, expiry, 'client disconnected')
}
