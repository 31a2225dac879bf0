import { NEVER_EXPIRES } from '../session/session.js'
import type { SessionOwner, StoredSession, StoredWill } from '../session/store.js'
import type { Will } from './broker.js'
import type { ClientInfo } from './hooks.js'

export function ownerOf(client: ClientInfo): SessionOwner {
  return { username: client.username, account: client.account, admin: client.admin, serves: client.serves }
}

export function storedWill(will: Will, publishAt: number | undefined): StoredWill {
  return { message: will.message, delaySeconds: will.delaySeconds, expirySeconds: will.expirySeconds, publishAt }
}

/** The identity a restored session acts under until its client reconnects. */
export function restoredClient(clientId: string, owner: SessionOwner): ClientInfo {
  return { clientId, ...owner, remoteAddress: '', protocolVersion: 5, listener: 'restored' }
}

export type RestorePlan =
  | { client: ClientInfo; expiresAt: number | undefined; will: undefined; willAt: undefined }
  | { client: ClientInfo; expiresAt: number | undefined; will: Will; willAt: number }

/**
 * The absolute deadlines of a stored session: one whose client was connected when perch
 * stopped lost its connection now, so its expiry and will delay count from now.
 */
export function planRestore(s: StoredSession, now: number): RestorePlan {
  const client = restoredClient(s.clientId, s.owner)
  const expiresAt = s.expiresAt ?? (s.expiryInterval === NEVER_EXPIRES ? undefined : now + s.expiryInterval * 1000)
  if (s.will === undefined) return { client, expiresAt, will: undefined, willAt: undefined }
  const will: Will = { message: s.will.message, delaySeconds: s.will.delaySeconds, expirySeconds: s.will.expirySeconds }
  return { client, expiresAt, will, willAt: s.will.publishAt ?? now + s.will.delaySeconds * 1000 }
}
