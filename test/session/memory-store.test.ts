import t from 'tap'
import { MemorySessionStore } from '../../src/mqtt/session/memory-store.js'
import { sessionStoreContract } from './store-contract.js'

// The memory-only mode has nothing to reopen: a restart starts empty.
sessionStoreContract(t, 'MemorySessionStore', { open: () => new MemorySessionStore() })

t.test('MemorySessionStore: is not durable', async (t) => {
  t.equal(new MemorySessionStore().durable, false)
})

t.test('MemorySessionStore: two stores do not share state', async (t) => {
  const a = new MemorySessionStore()
  const b = new MemorySessionStore()
  a.saveSession('x', { username: undefined, account: undefined, admin: false }, 60, undefined)
  t.strictSame(b.load(), { sessions: [], retained: [] })
  t.equal(a.load().sessions.length, 1)
})
