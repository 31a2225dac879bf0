// The compiled Acl against itself on generated cases: a subscription decided 'allow' may read
// every topic it matches, one decided 'deny' none; and the rate limiter on a fake clock.
import t from 'tap'
import type { AccountSnapshot } from '../../src/auth/account-store.js'
import { Acl, type Principal } from '../../src/auth/acl.js'
import { FailureLimiter } from '../../src/auth/rate-limit.js'
import { FakeClock } from '../../src/core/clock.js'
import { matchesFilter } from '../../src/mqtt/topic/match.js'

const snapshot: AccountSnapshot = {
  accounts: ['A', 'B', 'C', 'H'].map((id) => ({ id, verifier: undefined, admin: false, enabled: true, createdAt: 0 })),
  grants: [
    { owner: 'A', grantee: 'B', filter: '/A/x/#', publish: false, subscribe: true },
    { owner: 'A', grantee: 'B', filter: '/A/+/y', publish: true, subscribe: false },
    { owner: 'C', grantee: 'B', filter: '/C/x', publish: true, subscribe: true },
  ],
  handlers: [{ handler: 'H', account: 'A', filter: 'x/#' }],
}

const levels = ['A', 'B', 'C', 'x', 'y', '', 'events', 'grant_sub_topic']
function* topics(): Generator<string> {
  for (const a of levels) {
    yield `/${a}`
    for (const b of levels) {
      yield `/${a}/${b}`
      for (const c of ['x', 'y', '']) yield `/${a}/${b}/${c}`
    }
  }
  yield '$SYS/broker/uptime'
  yield 'plain/topic'
}
const filters = ['#', '+/#', '/+/#', '/+/x', '/A/#', '/A/x/#', '/A/+/y', '/A/x/y', '/B/#', '/C/x', '/C/#', '/+/+/y', '$SYS/#', 'plain/#', '/+', '/#']

t.test('subscription decisions agree with per-topic reads on every generated case', async (t) => {
  const acl = new Acl(snapshot)
  const principals: Principal[] = [
    { account: 'A', admin: false },
    { account: 'B', admin: false },
    { account: 'H', admin: false },
    { account: 'C', admin: false, serves: ['A'] },
  ]
  let checked = 0
  for (const p of principals) {
    for (const f of filters) {
      const decision = acl.subscribeDecision(p, f)
      const matching = [...topics()].filter((topic) => matchesFilter(f, topic))
      const readable = matching.filter((topic) => acl.canRead(p, topic))
      if (decision === 'allow') t.same(readable, matching, `${p.account} ${f}: allow means every match is readable`)
      if (decision === 'deny') t.same(readable, [], `${p.account} ${f}: deny means no match is readable`)
      checked++
    }
  }
  t.equal(checked, principals.length * filters.length)
})

t.test('rights: own namespace, grants by direction, handler filters, reserved levels, $ topics', async (t) => {
  const acl = new Acl(snapshot)
  const A = { account: 'A', admin: false }
  const B = { account: 'B', admin: false }
  const H = { account: 'H', admin: false }
  const root = { account: 'R', admin: true }
  t.ok(acl.canPublish(A, '/A/anything/below'))
  t.ok(acl.canPublish(A, '/A'))
  t.ok(acl.canPublish(A, '/A/grant_sub_topic'), 'the owner may request grants')
  t.notOk(acl.canPublish(A, '/A/events/connected'), 'only perch writes events')
  t.notOk(acl.canPublish(A, '/AB/x'), 'a prefix of another account is not the namespace')
  t.notOk(acl.canPublish(A, 'A/x'), 'nor a topic without the leading /')
  t.notOk(acl.canPublish(A, '$SYS/x'))
  t.ok(acl.canRead(B, '/A/x/1'))
  t.notOk(acl.canPublish(B, '/A/x/1'), 'a subscribe grant gives no publish right')
  t.ok(acl.canPublish(B, '/A/q/y'))
  t.notOk(acl.canRead(B, '/A/q/y'), 'a publish grant gives no read right')
  t.notOk(acl.canPublish(B, '/A/grant_sub_topic/y'), 'grant topics are the owner’s alone')
  t.ok(acl.canRead(H, '/A/x/deep'))
  t.ok(acl.canPublish(H, '/A/x/deep'))
  t.notOk(acl.canRead(H, '/A/y'))
  t.ok(acl.canRead({ account: 'C', admin: false, serves: ['A'] }, '/A/anything'), 'a handler token serves whole namespaces')
  t.ok(acl.canPublish(root, '$SYS/x'))
  t.equal(acl.subscribeDecision(root, '#'), 'allow')
  t.equal(acl.subscribeDecision(B, '/A/x/#'), 'allow')
  t.equal(acl.subscribeDecision(B, '/A/#'), 'filtered')
  t.equal(acl.subscribeDecision(B, '/A/y'), 'deny')
  t.equal(acl.subscribeDecision(B, '$SYS/#'), 'deny')
  t.equal(acl.subscribeDecision({ account: undefined, admin: false }, '#'), 'deny', 'no account, no rights')
})

t.test('the failure limiter blocks past the limit, for the block time, and forgets after the window', async (t) => {
  const clock = new FakeClock(1000)
  const l = new FailureLimiter({ maxFailures: 3, windowMs: 60_000, blockMs: 30_000 }, () => clock.now())
  l.failed('k')
  l.failed('k')
  t.equal(l.blockedFor('k'), 0)
  l.failed('k')
  t.equal(l.blockedFor('k'), 30_000)
  clock.advance(29_999)
  t.equal(l.blockedFor('k'), 1)
  clock.advance(1)
  t.equal(l.blockedFor('k'), 0, 'the block ends')
  clock.advance(60_000)
  l.failed('k')
  t.equal(l.blockedFor('k'), 0, 'a new window starts counting from one')
  l.succeeded('k')
  l.failed('k')
  l.failed('k')
  t.equal(l.blockedFor('k'), 0, 'a success clears the count')
  for (let i = 0; i < 20_000; i++) l.failed(`spray-${i}`)
  t.ok(l.tracked <= 10_000, 'many keys do not grow memory without bound: the oldest are forgotten')
})
