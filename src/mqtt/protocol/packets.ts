export type {
  IAuthPacket as AuthPacket,
  IConnackPacket as ConnackPacket,
  IDisconnectPacket as DisconnectPacket,
  IPingreqPacket as PingreqPacket,
  IPubackPacket as PubackPacket,
  IPubcompPacket as PubcompPacket,
  IPubrecPacket as PubrecPacket,
  IPubrelPacket as PubrelPacket,
  ISubackPacket as SubackPacket,
  ISubscribePacket as SubscribePacket,
  ISubscription as Subscription,
  IUnsubackPacket as UnsubackPacket,
  IUnsubscribePacket as UnsubscribePacket,
  QoS,
  UserProperties,
} from 'mqtt-packet'

import type { IConnectPacket, IPublishPacket, Packet as MqttPacket } from 'mqtt-packet'

/** User Properties in the order they came: a name may repeat, and order matters [MQTT-3.3.2-18]. */
export type UserPropertyList = readonly (readonly [string, string])[]

/** A PUBLISH as perch reads and writes it: mqtt-packet's, with its User Properties as an ordered list. */
export type PublishPacket = Omit<IPublishPacket, 'properties'> & {
  properties?: Omit<NonNullable<IPublishPacket['properties']>, 'userProperties'> & { userProperties?: UserPropertyList }
}

type MqttWill = NonNullable<IConnectPacket['will']>

/** A CONNECT as perch reads it: mqtt-packet's, with its will's User Properties as an ordered list. */
export type ConnectPacket = Omit<IConnectPacket, 'will'> & {
  will?: Omit<MqttWill, 'properties'> & {
    properties?: Omit<NonNullable<MqttWill['properties']>, 'userProperties'> & { userProperties?: UserPropertyList }
  }
}

export type Packet = Exclude<MqttPacket, IPublishPacket | IConnectPacket> | PublishPacket | ConnectPacket

/** Properties as mqtt-packet gives them, with their User Properties as a list. */
export function withUserPropertyList<T extends { userProperties?: Readonly<Record<string, string | string[]>> }>(p: T): Omit<T, 'userProperties'> & { userProperties?: UserPropertyList } {
  const { userProperties, ...rest } = p
  return userProperties === undefined ? rest : { ...rest, userProperties: userPropertyList(userProperties) }
}

/** mqtt-packet's form ({a: ['1', '3'], b: '2'}, order of first appearance) as a list. */
export function userPropertyList(record: Readonly<Record<string, string | string[]>>): UserPropertyList {
  return Object.entries(record).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((one) => [k, String(one)] as const))
}

export type ProtocolVersion = 3 | 4 | 5

/** v5 PUBLISH properties perch forwards unchanged from publisher to subscribers [MQTT-3.3.2-4..20]. */
export interface ForwardedProperties {
  payloadFormatIndicator?: boolean
  contentType?: string
  responseTopic?: string
  correlationData?: Buffer
  userProperties?: UserPropertyList
}
