export { createSerialBridge, encodeCommand, type SerialBridgeOptions } from './bridge.js'
export { createFramer, DEFAULT_MAX_FRAME, type FrameOutput, type Framer, type RawRecord, type RawValue } from './framing.js'
export { FieldPublisher, type MappedValue, type MappingConfig, mapValue, type Publication, renderPayload } from './mapping.js'
export { backoffDelay, classifyPortError, ManagedSerialPort, type ManagedSerialPortHandlers, type ManagedSerialPortOptions } from './serial-port.js'
