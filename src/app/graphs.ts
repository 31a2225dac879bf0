// Registered devices and their graphs: the feature store, the service on the broker, graph
// functions run as rules in the accounts' sandboxes, and the HTTP registration API's login.

import { JWT_USERNAME } from '../auth/account-hooks.js'
import type { Clock } from '../core/clock.js'
import { ConfigError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { DeviceGraphService, DevicesHttp, FeatureStore, type GraphSandbox } from '../features/index.js'

export { devicesUnavailable } from '../features/index.js'

import type { Broker } from '../mqtt/broker/broker.js'
import { GRAPH_RULE_PREFIX } from '../scripting/engine/control.js'
import type { RuleEngine } from '../scripting/engine/engine.js'
import { parseManifest } from '../scripting/engine/manifest.js'
import type { RulesService } from '../scripting/engine/rules-service.js'

export async function startGraphs(broker: Broker, dataDir: string, rules: RulesService | undefined, clock: Clock, logger: Logger): Promise<DeviceGraphService> {
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

/** The /devices API on the HTTP port: a login there is a login as an MQTT client would make it. */
export function devicesHttp(service: DeviceGraphService, broker: Broker): DevicesHttp {
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
