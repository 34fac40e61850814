/** The newest principal of each user: ordered by issue time, written only when it changes, kept across a restart. */
import { pino } from 'pino'
import t from 'tap'
import type { Grants, Principal, TokenVerifier } from '../../src/auth/index.js'
import { openPrincipalDirectory } from '../../src/store/known-principals.js'
import { openDatabase } from '../../src/store/open-store.js'
import { makeTempDir } from '../helpers/broker.js'
import { spyOnWrites } from '../helpers/write-spy.js'

const logger = pino({ level: 'silent' })
const noGrants: Grants = { pub: [], sub: [] }
const alice = (groups: string[], issuedAt?: number, grants = noGrants): Principal =>
  ({ kind: 'user', sub: 'alice', groups, role: 'device', grants, expiresAt: null, ...(issuedAt !== undefined && { issuedAt }) })

t.test('the token issued last wins, whatever order tokens are seen in', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const directory = await openPrincipalDirectory(db, logger)
  t.strictSame(await directory.latest(['alice']), [undefined], 'never seen')

  directory.seen(alice(['ops'], 1_000))
  t.match(await directory.latest(['alice']), [{ sub: 'alice', groups: ['ops'] }], 'latest waits for the update')
  directory.seen(alice([], 2_000))
  t.match(await directory.latest(['alice']), [{ groups: [] }], 'a newer token without ops replaces it')
  directory.seen(alice(['ops'], 1_500))
  t.match(await directory.latest(['alice']), [{ groups: [] }], 'an older token seen later does not')
  directory.seen(alice(['ops'], 3_000, { pub: [], sub: ['!users/%u/x'] }))
  t.match(await directory.latest(['alice', 'bob']), [{ groups: ['ops'], grants: { sub: ['!users/%u/x'] } }, undefined], 'grants come along; in order')
  directory.seen({ kind: 'anonymous', sub: null, groups: [], role: 'device', grants: noGrants, expiresAt: null })
  await directory.idle()
})

t.test('a write only when something changed; kept across a restart', async (t) => {
  const dir = await makeTempDir(t)
  let db = await openDatabase(dir)
  const writes = spyOnWrites(db)
  let directory = await openPrincipalDirectory(db, logger)
  directory.seen(alice(['ops'], 1_000))
  await directory.idle()
  t.equal(writes.length, 1, 'first sight: one write')
  for (let i = 0; i < 5; i++) directory.seen(alice(['ops'], 1_000))
  directory.seen(alice(['ops']))
  await directory.idle()
  t.equal(writes.length, 1, 'the same token again, or one without iat saying the same: no write')
  directory.seen(alice(['ops'], 2_000))
  await directory.idle()
  t.equal(writes.length, 2, 'a later iat is written, so an older token cannot win after a restart')
  directory.seen(alice([]))
  await directory.idle()
  t.equal(writes.length, 3, 'a token without iat saying something else is newer')
  await db.close()

  db = await openDatabase(dir)
  t.teardown(async () => await db.close())
  directory = await openPrincipalDirectory(db, logger)
  t.match(await directory.latest(['alice']), [{ groups: [] }], 'read back from LevelDB')
  directory.seen(alice(['ops'], 2_000))
  t.match(await directory.latest(['alice']), [{ groups: [] }], 'the stored issue time still orders tokens')
})

t.test('users seen for the first time cost no read, and their writes share batches', async (t) => {
  const dir = await makeTempDir(t)
  let db = await openDatabase(dir)
  const user = (n: number): Principal => ({ ...alice(['ops'], 1_000), sub: `device-${n}` })
  const countReads = (): { count: number } => {
    const reads = { count: 0 }
    // the sublevel's get and getMany end in the root database's
    const root = db as unknown as { _get: (...args: unknown[]) => Promise<unknown>, _getMany: (...args: unknown[]) => Promise<unknown> }
    const get = root._get.bind(db)
    const getMany = root._getMany.bind(db)
    root._get = async (...args) => { reads.count++; return await get(...args) }
    root._getMany = async (...args) => { reads.count++; return await getMany(...args) }
    return reads
  }
  let reads = countReads()
  const writes = spyOnWrites(db)
  let directory = await openPrincipalDirectory(db, logger)
  for (let n = 0; n < 200; n++) directory.seen(user(n))
  await directory.idle()
  t.equal(reads.count, 0, 'a connect storm of new users reads nothing')
  t.ok(writes.length > 0 && writes.length < 20, `200 records in ${writes.length} batches`)
  t.match(await directory.latest(['device-0', 'device-199', 'nobody']), [{ sub: 'device-0' }, { sub: 'device-199' }, undefined])
  t.equal(reads.count, 0, 'nor does asking for users never stored')
  await db.close()

  db = await openDatabase(dir)
  t.teardown(async () => await db.close())
  reads = countReads()
  directory = await openPrincipalDirectory(db, logger)
  directory.seen({ ...user(7), groups: [], issuedAt: 500 })
  t.match(await directory.latest(['device-7']), [{ groups: ['ops'] }], 'a stored user is read back after a restart: an older token does not win')
  t.ok(reads.count > 0, 'that took a read')
})

t.test('watch records what the verifier accepts, and nothing it refuses', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const directory = await openPrincipalDirectory(db, logger)
  const verifier: TokenVerifier = {
    verify (token) {
      if (token === 'bad') throw new Error('refused')
      return alice([token], 1_000)
    },
  }
  const watched = directory.watch(verifier)
  t.throws(() => watched.verify('bad'))
  t.strictSame(await directory.latest(['alice']), [undefined])
  t.match(watched.verify('ops'), { groups: ['ops'] }, 'the principal is returned as verified')
  t.match(await directory.latest(['alice']), [{ groups: ['ops'] }])
})
