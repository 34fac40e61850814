import t, { type Test } from 'tap'
import { covers, hasWildcard } from '../../src/acl/topic-match.js'

/** [outer, inner, expected]: does `outer` match every topic that `inner` matches? */
type Case = readonly [string, string, boolean]

function check (t: Test, cases: readonly Case[]): void {
  for (const [outer, inner, expected] of cases) {
    t.equal(covers(outer, inner), expected, `covers(${JSON.stringify(outer)}, ${JSON.stringify(inner)}) is ${String(expected)}`)
  }
}

t.test('exact topics match only themselves', async (t) => {
  check(t, [
    ['a', 'a', true],
    ['a/b', 'a/b', true],
    ['a/b/c', 'a/b/c', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a', false],
    ['a', 'a/b', false],
    ['a/b', 'a/b/', false],
    ['a/b/', 'a/b/', true],
    ['/a', '/a', true],
    ['/a', 'a', false],
    // levels are compared whole, never as prefixes, and case-sensitively
    ['a', 'ab', false],
    ['users/al', 'users/alice', false],
    ['A', 'a', false],
  ])
})

t.test('+ matches exactly one level, an empty one included', async (t) => {
  check(t, [
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/', true],
    ['a/+', 'a', false],
    ['a/+', 'a/b/c', false],
    ['a/+', 'b/c', false],
    ['+/b', 'a/b', true],
    ['+/b', 'a/c', false],
    ['+/+', 'a/b', true],
    ['+/+', 'a', false],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['users/+/inbox', 'users/alice/inbox', true],
    ['users/+/inbox', 'users/alice/inbox/x', false],
    ['+/', '/', true],
  ])
})

t.test('# matches any number of levels, the parent level included [MQTT-4.7.1-2]', async (t) => {
  check(t, [
    ['#', 'a', true],
    ['#', 'a/b/c', true],
    ['#', '/', true],
    ['a/#', 'a', true],
    ['a/#', 'a/', true],
    ['a/#', 'a/b', true],
    ['a/#', 'a/b/c/d', true],
    ['a/#', 'b', false],
    ['a/#', 'ab', false],
    ['a/#', 'b/a', false],
    ['a/b/#', 'a', false],
    ['a/b/#', 'a/b', true],
    ['a/b/#', 'a/c/d', false],
    ['+/#', 'a', true],
    ['+/#', 'a/b/c', true],
    ['a/+/#', 'a', false],
    ['a/+/#', 'a/b', true],
    ['a/+/#', 'a/b/c', true],
  ])
})

t.test('filter containment: every topic the inner filter matches, the outer one matches', async (t) => {
  check(t, [
    // identical filters
    ['a/+', 'a/+', true],
    ['a/#', 'a/#', true],
    ['#', '#', true],
    ['+', '+', true],
    // wider outer filters
    ['#', '+', true],
    ['#', '+/#', true],
    ['#', 'a/+/c/#', true],
    ['a/#', 'a/+', true],
    ['a/#', 'a/+/c', true],
    ['a/#', 'a/b/#', true],
    ['a/#', 'a/+/#', true],
    ['+/#', '+/+', true],
    ['+/+', 'a/+', true],
    ['+/+', '+/b', true],
    ['a/+/#', 'a/+', true],
    ['a/+/#', 'a/b/#', true],
    ['users/alice/#', 'users/alice/+/x', true],
    ['users/alice/#', 'users/alice/#', true],
    // the inner filter reaches topics the outer one does not
    ['a/b', 'a/+', false],
    ['a/b', 'a/#', false],
    ['a/+', 'a/#', false],
    ['a/+', 'a/+/#', false],
    ['a/+', '+/b', false],
    ['a/+/#', 'a/#', false],
    ['a/b/#', 'a/#', false],
    ['a/b/#', 'a/+/c', false],
    ['+', '#', false],
    ['+/+', '#', false],
    ['+/+', '+/#', false],
    ['+/#', '#', false],
    ['users/alice/#', 'users/+/inbox', false],
    ['users/alice/#', 'users/#', false],
    ['users/alice/#', '#', false],
    ['users/+/inbox', 'users/+/#', false],
    ['sensors/secret/#', 'sensors/#', false],
    ['sensors/secret/#', 'sensors/+/a', false],
  ])
})

t.test('topics starting with $ are not matched by a leading wildcard [MQTT-4.7.2-1]', async (t) => {
  check(t, [
    ['#', '$SYS', false],
    ['#', '$SYS/broker/clients', false],
    ['+/#', '$SYS/broker', false],
    ['+/broker', '$SYS/broker', false],
    ['+', '$SYS', false],
    ['#', '$SYS/#', false],
    ['+/#', '$SYS/+', false],
    ['#', '$share/g/a', false],
    // a $-filter matches its own tree
    ['$SYS/#', '$SYS', true],
    ['$SYS/#', '$SYS/broker/clients', true],
    ['$SYS/#', '$SYS/+/new/clients', true],
    ['$SYS/#', '$SYS/#', true],
    ['$SYS/+/new/clients', '$SYS/abc/new/clients', true],
    ['$SYS/#', 'SYS/x', false],
    ['$SYS/#', '#', false],
    ['$SYS/#', '+/x', false],
    // only the first level counts: a $ further down is an ordinary character
    ['a/+', 'a/$b', true],
    ['a/#', 'a/$b/c', true],
    ['#', 'a/$b', true],
  ])
})

t.test('hasWildcard', async (t) => {
  t.equal(hasWildcard('a/b'), false)
  t.equal(hasWildcard('$SYS/x'), false)
  t.equal(hasWildcard('a/+'), true)
  t.equal(hasWildcard('+'), true)
  t.equal(hasWildcard('a/#'), true)
  t.equal(hasWildcard('#'), true)
})

t.test('the shortcut shapes (a concrete filter, `prefix/#`) answer as level-by-level matching does', async (t) => {
  check(t, [
    ['a/b', 'a/b', true],
    ['a/b', 'a/+', false],
    ['a/b', 'a/#', false],
    ['a/b', 'a/b/', false],
    ['a/#', 'a', true],
    ['a/#', 'a/', true],
    ['a/#', 'ab', false],
    ['a/#', 'ab/c', false],
    ['a/#', 'a/#', true],
    ['a/#', 'a/+/c', true],
    ['a/#', '#', false],
    ['a/#', '+/x', false],
    ['/#', '', true],
    ['/#', '/x', true],
    ['/#', 'x', false],
    ['users/alice/#', 'users/alice', true],
    ['users/alice/#', 'users/alicex/y', false],
    ['$SYS/#', '$SYS/broker/load', true],
  ])
})
