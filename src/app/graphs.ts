// Registered devices and their graphs: the feature store, the service on the broker, graph
// functions run as rules in the accounts' sandboxes, and the HTTP registration API's login.
import type { IncomingMessage, ServerResponse } from 'node:http'

import { JWT_USERNAME } from '../auth/account-hooks.js'
import type { Clock } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { DeviceGraphService, DevicesHttp, devicesUnavailable, FeatureStore, type GraphSandbox } from '../features/index.js'

import type { Broker } from '../mqtt/broker/broker.js'
import { GRAPH_RULE_PREFIX } from '../scripting/engine/control.js'
import type { RuleEngine } from '../scripting/engine/engine.js'
import { parseManifest } from '../scripting/engine/manifest.js'
import type { RulesService } from '../scripting/engine/rules-service.js'
import type { PerchConfig } from './config.js'

/** The graphs part as started: its service, or why there is none. */
export interface GraphsPart {
  readonly service: DeviceGraphService | undefined
  readonly off: string | undefined
}

/**
 * Starts registered devices and their graphs when the config asks for them. Like sensors, they
 * are not worth failing the gateway for: a damaged features.db is logged, and the broker and
 * rules run without them.
 */
export async function openGraphs(config: PerchConfig, broker: Broker, rules: RulesService | undefined, clock: Clock, logger: Logger): Promise<GraphsPart> {
  if (!config.graphs.enabled) return { service: undefined, off: 'registered devices and graphs are off on this gateway (graphs.enabled is false)' }
  try {
    return { service: await startGraphs(broker, config.dataDir, rules, clock, logger), off: undefined }
  } catch (e) {
    logger.error('graphs.start-failed', { error: describeError(e), hint: 'registered devices and graphs are off until this is fixed and perch restarts' })
    return { service: undefined, off: `registered devices and graphs did not start: ${describeError(e)}` }
  }
}

async function startGraphs(broker: Broker, dataDir: string, rules: RulesService | undefined, clock: Clock, logger: Logger): Promise<DeviceGraphService> {
  const opened = FeatureStore.open(dataDir)
  if (!opened.ok) throw new ConfigError(`graphs: ${opened.error.message}`)
  const sandbox = rules === undefined ? undefined : engineSandbox(rules.engine)
  try {
    return await DeviceGraphService.start(broker, opened.value, sandbox, clock, logger)
  } catch (e) {
    opened.value.dispose()
    throw e
  }
}

/** The /devices paths of the HTTP port: the API, or 503 with the reason graphs are not running. */
export function devicesRoutes(part: GraphsPart, broker: Broker): (req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean> {
  if (part.service === undefined) return devicesUnavailable(part.off ?? 'registered devices and graphs are not running')
  const api = devicesHttp(part.service, broker)
  return (req, res, path) => api.handle(req, res, path)
}

/** The /devices API on the HTTP port: a login there is a login as an MQTT client would make it. */
function devicesHttp(service: DeviceGraphService, broker: Broker): DevicesHttp {
  return new DevicesHttp(
    service,
    () => broker.hooks,
    async (c, remoteAddress) =>
      broker.hooks.authenticate({
        clientId: '$perch/http',
        username: c.kind === 'basic' ? c.username : JWT_USERNAME,
        password: Buffer.from(c.kind === 'basic' ? c.password : c.token, 'utf8'),
        remoteAddress,
        protocolVersion: 5,
        listener: 'http',
        certificateCommonName: undefined,
      }),
  )
}

function engineSandbox(engine: RuleEngine): GraphSandbox {
  let version = 0
  return {
    check: (account, name, source) => engine.check(account, name, source),
    async install(account, graph, source, topics, errorTopic, outputs) {
      const rule = `${GRAPH_RULE_PREFIX}${graph}`
      const manifest = parseManifest({ triggers: { topics: [...topics] }, limits: { maxPublishes: Math.min(10_000, Math.max(100, outputs)) } }, rule, account)
      if (!manifest.ok) return { ok: false, error: manifest.error }
      return engine.install({ account, name: rule, source, manifest: manifest.value, version: ++version, origin: 'graph', errorTopic })
    },
    async uninstall(account, graph) {
      await engine.uninstall(account, `${GRAPH_RULE_PREFIX}${graph}`)
    },
  }
}
