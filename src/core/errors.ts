/** Every error perch reports carries a stable code that logs, tests and users can rely on. */
export class PerchError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PerchError'
    this.code = code
  }
}

export class ConfigError extends PerchError {
  constructor(message: string) {
    super('ECONFIG', message)
    this.name = 'ConfigError'
  }
}

/** A protocol violation: the connection is closed with this MQTT reason code. */
export class ProtocolError extends PerchError {
  readonly reasonCode: number
  constructor(reasonCode: number, message: string) {
    super('EPROTOCOL', message)
    this.name = 'ProtocolError'
    this.reasonCode = reasonCode
  }
}

export function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
