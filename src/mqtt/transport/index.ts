export { Connection, type ConnectionMeta } from './connection.js'
export type { ConnectionLimits, Flusher, PacketContext, SlowConsumerPolicy, TransportServices } from './context.js'
export { ImmediateFlusher } from './flusher.js'
export { ConnectionSet, type ListenerSpec, listen, type RunningListener, type TlsFiles } from './listeners.js'
