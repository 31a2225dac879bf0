export type {
  ChipInfo,
  GpioBackend,
  GpioError,
  GpioErrorCode,
  GpioInputLine,
  GpioOutputLine,
  InputRequest,
  Level,
  OutputRequest,
} from './backend.js'
export { gpioError } from './backend.js'
export { createGpioBridge, parseLevel, stateTopicOf } from './bridge.js'
export { listChips, resolveChipBase, SYSFS_GPIO_ROOT } from './chip-base.js'
export { createOnoffBackend, type OnoffBackendOptions } from './onoff-backend.js'
