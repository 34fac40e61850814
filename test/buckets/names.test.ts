import t from 'tap'
import { HeraldError } from '../../src/errors/index.js'
import {
  checkPreconditions, eventsTopicBucket, bucketEventsTopic, generateObjectId, isBucketName, isObjectId, parseIfMatch, parseIfNoneMatch,
} from '../../src/buckets/index.js'

t.test('generated ids are valid object ids and sort by creation time', async (t) => {
  const ids = [generateObjectId(1_000), generateObjectId(2_000), generateObjectId(Date.now())]
  for (const id of ids) t.ok(isObjectId(id), id)
  t.strictSame([...ids].sort(), ids)
  t.equal(new Set(Array.from({ length: 1000 }, () => generateObjectId())).size, 1000, 'no collisions')
})

t.test('names', async (t) => {
  for (const good of ['a', 'A-z_0', 'x'.repeat(64)]) t.ok(isBucketName(good), good)
  for (const bad of ['', 'x'.repeat(65), 'a/b', 'a+', '#', 'a.b', 'é', 'a b']) t.notOk(isBucketName(bad), JSON.stringify(bad))
  t.ok(isObjectId('x'.repeat(128)))
  t.notOk(isObjectId('x'.repeat(129)))
})

t.test('events topics', async (t) => {
  t.equal(bucketEventsTopic({ kind: 'app' }, 'news'), 'app/buckets/news/events')
  t.equal(bucketEventsTopic({ kind: 'user', id: 'alice' }, 'notes'), 'users/alice/buckets/notes/events')
  t.equal(bucketEventsTopic({ kind: 'group', id: 'ops' }, 'tasks'), 'groups/ops/buckets/tasks/events')
  t.strictSame(eventsTopicBucket('app/buckets/news/events'), { scope: 'app', bucket: 'news' })
  t.strictSame(eventsTopicBucket('users/alice/buckets/n/events'), { scope: 'users', bucket: 'n' })
  t.strictSame(eventsTopicBucket('groups/g/buckets/+/events'), { scope: 'groups', bucket: '+' })
  for (const other of ['app/buckets', 'app/news', 'app/buckets/news', 'app/buckets/news/events/x', 'users/alice/buckets/n', 'users/alice/notes/n/events', 'x/y/buckets/n/events']) {
    t.equal(eventsTopicBucket(other), undefined, other)
  }
})

t.test('If-Match and If-None-Match', async (t) => {
  t.equal(parseIfMatch(undefined), undefined)
  t.equal(parseIfMatch('3'), 3)
  t.equal(parseIfMatch('"12"'), 12)
  t.equal(parseIfMatch(' * '), '*')
  for (const bad of ['', 'W/"3"', '"3", "4"', '-1', '1.5', 'abc', '"3']) t.throws(() => parseIfMatch(bad), { code: 'INVALID_REQUEST' }, JSON.stringify(bad))
  t.equal(parseIfNoneMatch('*'), '*')
  t.throws(() => parseIfNoneMatch('"3"'), { code: 'INVALID_REQUEST' })

  const code = (fn: () => void): string | undefined => {
    try {
      fn()
      return undefined
    } catch (err) {
      return (err as HeraldError).code
    }
  }
  t.equal(code(() => checkPreconditions(2, {})), undefined)
  t.equal(code(() => checkPreconditions(undefined, {})), undefined)
  t.equal(code(() => checkPreconditions(2, { ifMatch: 2 })), undefined)
  t.equal(code(() => checkPreconditions(2, { ifMatch: 1 })), 'PRECONDITION_FAILED')
  t.equal(code(() => checkPreconditions(undefined, { ifMatch: '*' })), 'PRECONDITION_FAILED')
  t.equal(code(() => checkPreconditions(2, { ifNoneMatch: '*' })), 'ALREADY_EXISTS')
  t.equal(code(() => checkPreconditions(undefined, { ifNoneMatch: '*' })), undefined)
})
