import type { JsonSchema } from '../core/schema.js'

const int = (minimum: number, maximum: number): JsonSchema => ({ type: 'integer', minimum, maximum })

const listenerSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'port'],
  properties: {
    name: { type: 'string', minLength: 1 },
    kind: { enum: ['tcp', 'tls', 'ws'] },
    host: { type: 'string', minLength: 1 },
    port: int(0, 65_535),
    cert: { type: 'string', minLength: 1 },
    key: { type: 'string', minLength: 1 },
    ca: { type: 'string', minLength: 1 },
    requireClientCert: { type: 'boolean' },
    path: { type: 'string', pattern: '^/' },
  },
}

/** The JSON schema a config file is validated against (config.ts lays the result over the defaults). */
export const CONFIG_SCHEMA: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dataDir: { type: 'string', minLength: 1 },
    log: { type: 'object', additionalProperties: false, properties: { level: { enum: ['debug', 'info', 'warn', 'error'] } } },
    listeners: { type: 'array', minItems: 1, items: listenerSchema },
    auth: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['accounts', 'open', 'static', 'mysql-users'] },
        jwt: {
          type: 'object',
          additionalProperties: false,
          properties: {
            secret: { type: 'string', minLength: 16 },
            secretFile: { type: 'string', minLength: 1 },
            publicKeyFile: { type: 'string', minLength: 1 },
            accountClaim: { type: 'string', minLength: 1 },
            issuer: { type: 'string', minLength: 1 },
            audience: { type: 'string', minLength: 1 },
            clockTolerance: int(0, 3600),
          },
        },
        rateLimit: {
          type: 'object',
          additionalProperties: false,
          properties: { addressFailures: int(1, 1_000_000), accountFailures: int(1, 1_000_000), window: int(1, 86_400), block: int(0, 86_400) },
        },
        reloadInterval: { type: 'number', minimum: 0.05, maximum: 3600 },
        mysqlUsers: {
          type: 'object',
          additionalProperties: false,
          properties: { url: { type: 'string', minLength: 1 }, urlFile: { type: 'string', minLength: 1 }, trustPeriod: int(0, 31_536_000), connectTimeout: int(1, 300) },
        },
        allowAnonymous: { type: 'boolean' },
        defaultAction: { enum: ['allow', 'deny'] },
        rules: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['action', 'access', 'topic'],
            properties: {
              action: { enum: ['allow', 'deny'] },
              access: { enum: ['publish', 'subscribe', 'both'] },
              topic: { type: 'string', minLength: 1 },
              username: { type: 'string' },
            },
          },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxConnections: int(1, 1_000_000),
        maxPacketSize: int(64, 268_435_455),
        connectTimeout: int(1, 3600),
        maxKeepalive: int(0, 65_535),
        maxInflight: int(1, 65_535),
        receiveMaximum: int(1, 65_535),
        maxQueuedMessages: int(0, 10_000_000),
        maxQueuedBytes: int(0, 4_294_967_295),
        maxQueuedMessagesTotal: int(0, 100_000_000),
        maxQueuedBytesTotal: int(0, 68_719_476_736),
        maxTopicLength: int(1, 65_535),
        maxTopicLevels: int(1, 1024),
        topicAliasMaximum: int(0, 65_535),
        maxWriteBuffer: int(1024, 1_073_741_824),
        slowConsumerPolicy: { enum: ['drop', 'disconnect'] },
        maxSessionExpiry: int(0, 4_294_967_295),
      },
    },
    sys: { type: 'object', additionalProperties: false, properties: { interval: int(0, 86_400) } },
    rules: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        dir: { type: 'string', minLength: 1 },
        failureLimit: int(1, 1000),
        coolOff: int(0, 86_400),
        reloadInterval: { type: 'number', minimum: 0.05, maximum: 3600 },
        watchdog: { type: 'number', minimum: 0.1, maximum: 600 },
      },
    },
    devices: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        dir: { type: 'string', minLength: 1 },
        board: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
      },
    },
    graphs: { type: 'object', additionalProperties: false, properties: { enabled: { type: 'boolean' } } },
    sync: {
      type: 'object',
      additionalProperties: false,
      properties: {
        url: { type: 'string', minLength: 1 },
        urlFile: { type: 'string', minLength: 1 },
        gateway: { type: 'string', minLength: 1 },
        interval: { type: 'number', minimum: 0.05, maximum: 86_400 },
        queryTimeout: { type: 'number', minimum: 0.05, maximum: 3600 },
        connectTimeout: { type: 'number', minimum: 0.05, maximum: 3600 },
        maxBackoff: { type: 'number', minimum: 0.05, maximum: 86_400 },
      },
    },
    http: {
      type: 'object',
      additionalProperties: false,
      required: ['port'],
      properties: { port: int(0, 65_535), host: { type: 'string', minLength: 1 } },
    },
    persistence: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['sqlite', 'memory'] },
        file: { type: 'string', minLength: 1 },
        synchronous: { enum: ['full', 'normal'] },
        commitIntervalMs: int(1, 1000),
        commitMaxWrites: int(1, 1_000_000),
        onCorrupt: { enum: ['fail', 'move-aside'] },
      },
    },
  },
}
