import t from 'tap'
import { MemorySessionStore } from '../../src/mqtt/session/memory-store.js'
import { makeSession, sessionStoreContract } from './store-contract.js'

sessionStoreContract(t, 'MemorySessionStore', () => new MemorySessionStore())

t.test('MemorySessionStore: two stores do not share state', async (t) => {
  const a = new MemorySessionStore()
  const b = new MemorySessionStore()
  a.put(makeSession('x'))
  t.equal(b.get('x'), undefined)
  t.equal(b.size, 0)
})
