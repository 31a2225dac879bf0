export { QueueBudget } from './budget.js'
export { MemorySessionStore } from './memory-store.js'
export {
  cachedEncoding,
  cacheEncoding,
  createMessage,
  type Delivery,
  type Message,
  type MessageFields,
  messageBytes,
  type QoS,
} from './message.js'
export type { PacketSink } from './ports.js'
export {
  type DeliverOutcome,
  type DropCounter,
  NEVER_EXPIRES,
  type OutFlight,
  type OutState,
  Session,
  type SessionDeps,
  type SessionLimits,
  type SubscriptionOptions,
} from './session.js'
export type {
  DeliveryState,
  SessionOwner,
  SessionStore,
  StoredDelivery,
  StoredSession,
  StoredState,
  StoredWill,
} from './store.js'
