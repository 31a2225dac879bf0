import { createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto'

/** scrypt cost: N=2^14, r=8, p=1 (16 MB, tens of milliseconds on a Pi 4), kept in each verifier. */
const N = 16_384
const R = 8
const P = 1
const KEY_BYTES = 32
const SALT_BYTES = 16

interface Parsed {
  n: number
  r: number
  p: number
  salt: Buffer
  key: Buffer
}

function derive(password: Buffer, salt: Buffer, n: number, r: number, p: number, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem must cover 128 * N * r bytes, plus slack.
    scrypt(password, salt, length, { N: n, r, p, maxmem: 256 * n * r }, (e, key) => (e === null ? resolve(key) : reject(e)))
  })
}

/** A salted scrypt verifier: `scrypt$N$r$p$<salt>$<key>`, base64url fields. Runs off the event loop. */
export async function hashPassword(password: string | Buffer): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(Buffer.from(password), salt, N, R, P, KEY_BYTES)
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

export function parseVerifier(verifier: string): Parsed | undefined {
  const parts = verifier.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  if (![n, r, p].every((x) => Number.isSafeInteger(x) && x > 0) || n > 1 << 20 || r > 32 || p > 16) return undefined
  const salt = Buffer.from(parts[4] ?? '', 'base64url')
  const key = Buffer.from(parts[5] ?? '', 'base64url')
  if (salt.length < 8 || key.length < 16) return undefined
  return { n, r, p, salt, key }
}

/** A verifier for no password, so an unknown account costs as much as a known one. */
const DUMMY: Parsed = { n: N, r: R, p: P, salt: Buffer.alloc(SALT_BYTES, 1), key: Buffer.alloc(KEY_BYTES, 2) }

/**
 * Checks passwords against verifiers in constant time. A successful check is remembered as an
 * HMAC under a key that lives only in this process, so a fleet of devices reconnecting after a
 * power cut costs one scrypt per account, not one per connection; a changed verifier forgets it.
 */
export class PasswordChecker {
  readonly #key = randomBytes(32)
  readonly #remembered = new Map<string, { verifier: string; mac: Buffer }>()

  async verify(account: string, password: Buffer, verifier: string | undefined): Promise<boolean> {
    const mac = createHmac('sha256', this.#key).update(account).update('\0').update(password).digest()
    const known = this.#remembered.get(account)
    if (known !== undefined && known.verifier === verifier && timingSafeEqual(known.mac, mac)) return true
    const parsed = verifier === undefined ? undefined : parseVerifier(verifier)
    const v = parsed ?? DUMMY
    const key = await derive(password, v.salt, v.n, v.r, v.p, v.key.length)
    const good = timingSafeEqual(key, v.key) && parsed !== undefined
    if (good && verifier !== undefined) this.#remembered.set(account, { verifier, mac })
    return good
  }

  forget(account: string): void {
    this.#remembered.delete(account)
  }
}

/** A password for a new account: 24 characters from 18 random bytes. */
export function randomPassword(): string {
  return randomBytes(18).toString('base64url')
}
