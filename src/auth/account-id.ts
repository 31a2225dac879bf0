/** Names the JWT login uses as its username: no account may take them. */
const RESERVED = new Set(['JWT'])

export const MAX_ACCOUNT_ID_LENGTH = 64

/**
 * Why `id` cannot be an account id, or null when it can. An account id is exactly one topic
 * level: a '/' would let it own another account's subtree, a '+' or '#' would turn the
 * filters built from it into wildcards, and an empty level is shared by every topic.
 */
export function accountIdProblem(id: string): string | null {
  if (id.length === 0) return 'an account id may not be empty'
  if (id.length > MAX_ACCOUNT_ID_LENGTH) return `an account id has at most ${MAX_ACCOUNT_ID_LENGTH} characters`
  if (/[/+#]/.test(id)) return "an account id may not contain '/', '+' or '#'"
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\s]/.test(id)) return 'an account id may not contain spaces or control characters'
  if (id.startsWith('$')) return "an account id may not start with '$'"
  if (RESERVED.has(id)) return `"${id}" is reserved`
  return null
}

export { ownerOf } from '../mqtt/topic/namespace.js'
