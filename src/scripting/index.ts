export { MODULES_WITH_TRAP_HANDLER, wasmTrapHandlerDisabled } from './address-space.js'
export { SandboxHost, type SandboxHostOptions } from './host.js'
export {
  DEFAULT_MAX_PUBLISHES,
  DEFAULT_MEMORY_MB,
  DEFAULT_TIME_MS,
  KV_MAX_ACCOUNT_BYTES,
  KV_MAX_KEY_BYTES,
  KV_MAX_VALUE_BYTES,
} from './limits.js'
export type { QuickJSVariantName } from './quickjs.js'
export type {
  DisposeReport,
  Effect,
  InvokeError,
  InvokeErrorCode,
  InvokeResult,
  LoadError,
  RuleInput,
  RuleLimits,
  RuleSpec,
  SandboxStats,
} from './types.js'
