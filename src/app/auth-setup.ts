// How the auth part of the config becomes broker hooks: the accounts store, JWT settings, or the
// static and open rule sets.
import { readFileSync } from 'node:fs'
import { AccountService } from '../auth/accounts.js'
import type { JwtSettings } from '../auth/jwt.js'
import { OpenHooks } from '../auth/open.js'
import { StaticRuleHooks } from '../auth/static-rules.js'
import type { Clock } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { BrokerHooks } from '../mqtt/broker/hooks.js'
import type { PerchConfig } from './config.js'

export async function openAccounts(config: PerchConfig, clock: Clock, logger: Logger): Promise<AccountService> {
  const a = config.auth
  const r = a.rateLimit
  const opened = await AccountService.open(
    {
      dataDir: config.dataDir,
      jwt: jwtSettings(config),
      byAddress: { maxFailures: r.addressFailures, windowMs: r.window * 1000, blockMs: r.block * 1000 },
      byAccount: { maxFailures: r.accountFailures, windowMs: r.window * 1000, blockMs: r.block * 1000 },
      reloadIntervalMs: a.reloadInterval * 1000,
      limits: { maxTopicLength: config.limits.maxTopicLength, maxTopicLevels: config.limits.maxTopicLevels },
    },
    clock,
    logger,
  )
  if (!opened.ok) throw new ConfigError(`accounts: ${opened.error.message}`)
  return opened.value
}

function jwtSettings(config: PerchConfig): JwtSettings | undefined {
  const j = config.auth.jwt
  if (j === undefined) return undefined
  const secret = j.secretFile === undefined ? j.secret : readText(j.secretFile, 'auth.jwt.secretFile').trim()
  if (secret !== undefined && Buffer.byteLength(secret) < 16) throw new ConfigError('auth.jwt: the secret must have at least 16 bytes')
  const publicKey = j.publicKeyFile === undefined ? undefined : readText(j.publicKeyFile, 'auth.jwt.publicKeyFile')
  return { secret, publicKey, accountClaim: j.accountClaim, issuer: j.issuer, audience: j.audience, clockToleranceSeconds: j.clockTolerance }
}

function readText(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new ConfigError(`${key} ${path}: ${describeError(e)}`)
  }
}

export function buildHooks(config: PerchConfig): BrokerHooks {
  if (config.auth.mode === 'open') return new OpenHooks()
  return new StaticRuleHooks({
    allowAnonymous: config.auth.allowAnonymous,
    defaultAction: config.auth.defaultAction,
    rules: config.auth.rules.map((r) => ({ action: r.action, access: r.access, topic: r.topic, username: r.username })),
  })
}
