export { createOneWireBridge, MIN_INTERVAL_MS } from './bridge.js'
export { parseW1Slave, W1_ROOT, W1Bus, type W1Error, type W1ErrorCode } from './w1.js'
