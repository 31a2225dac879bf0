import type { PingreqPacket } from '../../protocol/packets.js'
import type { PacketContext } from '../context.js'

export function handlePingreq(ctx: PacketContext, _p: PingreqPacket): void {
  ctx.send({ cmd: 'pingresp' })
}
