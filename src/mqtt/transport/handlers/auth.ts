import type { AuthPacket } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import type { PacketContext } from '../context.js'

/** perch offers no enhanced authentication, so AUTH is never expected [MQTT-4.12.0-1]. */
export function handleAuth(ctx: PacketContext, _p: AuthPacket): void {
  ctx.fail(RC.PROTOCOL_ERROR, 'AUTH without an authentication method: enhanced authentication is not supported')
}
