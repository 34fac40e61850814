import t from 'tap'
import { RetainedIndex, retainedNamespace } from '../../src/store/retained-index.js'

const TOPICS = [
  'users/alice',
  'users/alice/status',
  'users/alice/devices/phone/status',
  'users/alice/a//b',
  'users/alice/',
  'users/bob/status',
  'groups/ops/news',
  'app/news',
  '/leading',
  '$SYS/broker/uptime',
  '$herald/x',
]

function indexOf (topics: readonly string[]): RetainedIndex {
  const index = new RetainedIndex()
  for (const topic of topics) index.add(topic)
  return index
}

t.test('filters match stored topics as MQTT 3.1.1 section 4.7 says', async (t) => {
  const index = indexOf(TOPICS)
  const cases: Array<[string, string[]]> = [
    ['users/alice/status', ['users/alice/status']],
    ['users/alice/nothing', []],
    // [MQTT-4.7.1-2] # matches the parent level too
    ['users/alice/#', ['users/alice', 'users/alice/status', 'users/alice/devices/phone/status', 'users/alice/a//b', 'users/alice/']],
    ['users/+/status', ['users/alice/status', 'users/bob/status']],
    ['users/+', ['users/alice']],
    // + matches an empty level
    ['users/alice/+', ['users/alice/status', 'users/alice/']],
    ['users/alice/a/+/b', ['users/alice/a//b']],
    ['+/leading', ['/leading']],
    ['+/+/devices/+/status', ['users/alice/devices/phone/status']],
    ['users/alice/devices/phone/status/#', ['users/alice/devices/phone/status']],
    // [MQTT-4.7.2-1] a leading wildcard never matches a $ topic
    ['#', TOPICS.filter((topic) => !topic.startsWith('$'))],
    ['+/#', TOPICS.filter((topic) => !topic.startsWith('$'))],
    ['+/broker/uptime', []],
    ['$SYS/#', ['$SYS/broker/uptime']],
    ['$SYS/+/uptime', ['$SYS/broker/uptime']],
    ['$herald/x', ['$herald/x']],
  ]
  for (const [filter, expected] of cases) t.same(index.match([filter]).sort(), [...expected].sort(), filter)
})

t.test('several filters: each matching topic once, in the order of the filters', async (t) => {
  const index = indexOf(TOPICS)
  t.same(index.match(['users/bob/#', 'users/+/status', 'groups/ops/news']), ['users/bob/status', 'users/alice/status', 'groups/ops/news'])
  t.same(index.match(['nothing/#', 'app/+']), ['app/news'])
  t.same(index.match([]), [])
})

t.test('add, has, delete and size; a deleted topic leaves its neighbours alone', async (t) => {
  const index = indexOf(TOPICS)
  t.equal(index.size, TOPICS.length)
  t.notOk(index.add('users/alice/status'), 'adding again is no change')
  t.equal(index.size, TOPICS.length)
  t.ok(index.has('users/alice'))
  t.notOk(index.has('users/alice/devices'), 'a level on the way to a topic is not a topic')
  t.notOk(index.delete('users/alice/devices'), 'nor can it be deleted')
  t.ok(index.delete('users/alice'))
  t.notOk(index.delete('users/alice'))
  t.notOk(index.has('users/alice'))
  t.same(index.match(['users/alice/#']).sort(), ['users/alice/', 'users/alice/a//b', 'users/alice/devices/phone/status', 'users/alice/status'])
  t.ok(index.delete('users/alice/devices/phone/status'))
  t.same(index.match(['users/alice/devices/+/+']), [])
  t.same(index.match(['users/+/status']).sort(), ['users/alice/status', 'users/bob/status'])
  for (const topic of TOPICS) index.delete(topic)
  t.equal(index.size, 0)
  t.same(index.match(['#']), [])
  // everything was pruned: the trie is usable again from empty
  index.add('users/alice/status')
  t.same(index.match(['#']), ['users/alice/status'])
})

t.test('a level going from one child to several and back keeps every topic reachable', async (t) => {
  const index = new RetainedIndex()
  index.add('a/b/c')
  index.add('a/x')
  index.add('a/y/z')
  t.same(index.match(['a/#']).sort(), ['a/b/c', 'a/x', 'a/y/z'])
  index.delete('a/x')
  index.delete('a/b/c')
  t.same(index.match(['a/#']), ['a/y/z'])
  t.same(index.match(['a/+/z']), ['a/y/z'])
  index.add('a/b')
  t.same(index.match(['a/+']), ['a/b'])
  t.same(index.match(['a/#']).sort(), ['a/b', 'a/y/z'])
})

t.test('topics are counted per user and per group namespace', async (t) => {
  t.same(retainedNamespace('users/alice/status'), { kind: 'user', key: 'users/alice' })
  t.same(retainedNamespace('users/alice'), { kind: 'user', key: 'users/alice' })
  t.same(retainedNamespace('groups/ops/a/b'), { kind: 'group', key: 'groups/ops' })
  t.equal(retainedNamespace('users/'), undefined)
  t.equal(retainedNamespace('users//x'), undefined)
  t.equal(retainedNamespace('app/news'), undefined)
  t.equal(retainedNamespace('usersx/alice'), undefined)
  const index = indexOf(TOPICS)
  t.equal(index.countIn('users/alice'), 5)
  t.equal(index.countIn('users/bob'), 1)
  t.equal(index.countIn('groups/ops'), 1)
  t.equal(index.countIn('users/carol'), 0)
  index.add('users/alice/status')
  t.equal(index.countIn('users/alice'), 5, 'a topic added again counts once')
  index.delete('users/alice/status')
  index.delete('users/alice/status')
  t.equal(index.countIn('users/alice'), 4)
})

t.test('a filter that matches nothing visits only its own path, whatever else is stored', async (t) => {
  const index = new RetainedIndex()
  for (let i = 0; i < 50_000; i++) index.add(`users/device/t${i}`)
  index.add('users/zoe/status')
  // 20,000 lookups: a scan of the 50,001 topics each would take minutes
  const started = process.hrtime.bigint()
  for (let i = 0; i < 20_000; i++) index.match(['users/zoe/#'])
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  t.ok(ms < 2000, `20,000 matches took ${ms.toFixed(0)} ms`)
  t.same(index.match(['users/zoe/#']), ['users/zoe/status'])
})
