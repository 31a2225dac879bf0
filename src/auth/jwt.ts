import { createPublicKey, type KeyObject } from 'node:crypto'
import { errors, jwtVerify } from 'jose'
import { err, ok, type Result } from '../core/result.js'

export interface JwtSettings {
  /** HS256 shared secret. */
  readonly secret: string | undefined
  /** RS256 or ES256 public key, PEM text. */
  readonly publicKey: string | undefined
  /** The claim that names the account; `sub` by default. */
  readonly accountClaim: string
  readonly issuer: string | undefined
  readonly audience: string | undefined
  /** Leeway for `exp` and `nbf`, in seconds. */
  readonly clockToleranceSeconds: number
}

export interface TokenClaims {
  readonly account: string
  /** The accounts a handler token serves (the `handler` claim), undefined for other tokens. */
  readonly serves: readonly string[] | undefined
}

export type TokenError = {
  readonly code: 'expired' | 'not-yet-valid' | 'invalid'
  readonly reason: string
  /** The account a correctly signed but expired or early token names: it is told of the attempt. */
  readonly account?: string | undefined
}

/**
 * Verifies login tokens: only the algorithms the configured keys are for are accepted (so
 * `alg: none` and an HS256 token "signed" with a public key both fail), `exp` is required,
 * `exp` and `nbf` are enforced against the injected clock.
 */
export class JwtVerifier {
  readonly #settings: JwtSettings
  readonly #secret: Uint8Array | undefined
  readonly #publicKey: KeyObject | undefined
  readonly #algorithms: string[]
  readonly #now: () => number

  constructor(settings: JwtSettings, now: () => number) {
    this.#settings = settings
    this.#now = now
    this.#secret = settings.secret === undefined ? undefined : new TextEncoder().encode(settings.secret)
    this.#algorithms = []
    if (this.#secret !== undefined) this.#algorithms.push('HS256')
    if (settings.publicKey !== undefined) {
      // Throws on a malformed key: the config check reports it before perch starts.
      this.#publicKey = createPublicKey(settings.publicKey)
      const type = this.#publicKey.asymmetricKeyType
      const details = this.#publicKey.asymmetricKeyDetails
      // A key no RS256/ES256 token can verify against is refused here, not at every login.
      if (type === 'rsa' && (details?.modulusLength ?? 0) < 2048) {
        throw new Error(`a ${String(details?.modulusLength)}-bit RSA public key is too short: RS256 needs at least 2048 bits`)
      }
      if (type === 'ec' && details?.namedCurve !== 'prime256v1') {
        throw new Error(`an EC public key on curve ${String(details?.namedCurve)} is not supported: ES256 needs a P-256 (prime256v1) key`)
      }
      if (type === 'rsa') this.#algorithms.push('RS256')
      else if (type === 'ec') this.#algorithms.push('ES256')
      else throw new Error(`a ${String(type)} public key is not supported: use an RSA (RS256) or P-256 EC (ES256) key`)
    }
  }

  async verify(token: string): Promise<Result<TokenClaims, TokenError>> {
    const s = this.#settings
    try {
      const { payload } = await jwtVerify(token, (header) => this.#keyFor(header.alg), {
        algorithms: this.#algorithms,
        requiredClaims: ['exp'],
        currentDate: new Date(this.#now()),
        clockTolerance: s.clockToleranceSeconds,
        ...(s.issuer === undefined ? {} : { issuer: s.issuer }),
        ...(s.audience === undefined ? {} : { audience: s.audience }),
      })
      const account = payload[s.accountClaim]
      if (typeof account !== 'string') return err({ code: 'invalid', reason: `the token has no "${s.accountClaim}" claim naming the account` })
      const serves = handlerAccounts(payload.handler)
      if (serves === null) return err({ code: 'invalid', reason: 'the "handler" claim must list the accounts it serves' })
      return ok({ account, serves })
    } catch (e) {
      // jose checks the claims only after the signature, so the payload of these two is genuine.
      if (e instanceof errors.JWTExpired) return err({ code: 'expired', reason: 'the token has expired', account: this.#claimed(e.payload) })
      if (e instanceof errors.JWTClaimValidationFailed && e.claim === 'nbf') {
        return err({ code: 'not-yet-valid', reason: 'the token is not valid yet', account: this.#claimed(e.payload) })
      }
      return err({ code: 'invalid', reason: `invalid token: ${e instanceof Error ? e.message : String(e)}` })
    }
  }

  #claimed(payload: Record<string, unknown>): string | undefined {
    const a = payload[this.#settings.accountClaim]
    return typeof a === 'string' ? a : undefined
  }

  #keyFor(alg: string | undefined): Uint8Array | KeyObject {
    const key = alg === 'HS256' ? this.#secret : this.#publicKey
    if (key === undefined) throw new Error(`no key for ${String(alg)}`)
    return key
  }
}

/**
 * The Cashew handler claim: `{"handler": {"name": "...", "accounts": ["A", "B"]}}`, or simply
 * `{"handler": ["A", "B"]}`. Undefined when absent, null when malformed.
 */
function handlerAccounts(claim: unknown): readonly string[] | undefined | null {
  if (claim === undefined) return undefined
  const list = Array.isArray(claim) ? claim : typeof claim === 'object' && claim !== null ? (claim as { accounts?: unknown }).accounts : undefined
  if (!Array.isArray(list) || !list.every((a): a is string => typeof a === 'string')) return null
  return list
}
