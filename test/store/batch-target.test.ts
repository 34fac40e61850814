import t from 'tap'
import { groupCommitTarget } from '../../src/store/batch-target.js'
import { openDatabase } from '../../src/store/open-store.js'
import { makeTempDir } from '../helpers/broker.js'

t.test('LevelDB: operations written past abstract-level read back through its public API', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const sessions = db.sublevel<string, Buffer>('sessions', { valueEncoding: 'buffer' })
  const owners = db.sublevel<string, unknown>('owners', { valueEncoding: 'json' })
  const target = groupCommitTarget(db)
  t.not(target, db, 'LevelDB gets the direct path')
  await target.batch([
    { type: 'put', key: sessions.prefixKey('outgoing:phone:b:1', 'utf8'), value: Buffer.from([1, 2, 3]) },
    { type: 'put', key: sessions.prefixKey('outgoing:phone:b:2', 'utf8'), value: Buffer.from([4]) },
    { type: 'put', key: owners.prefixKey('phone', 'utf8'), value: Buffer.from(JSON.stringify({ owner: 'user:alice' })) },
  ], { valueEncoding: 'buffer' })
  await target.batch([{ type: 'del', key: sessions.prefixKey('outgoing:phone:b:2', 'utf8') }], { valueEncoding: 'buffer' })
  t.same(await sessions.keys().all(), ['outgoing:phone:b:1'])
  t.same(await sessions.get('outgoing:phone:b:1'), Buffer.from([1, 2, 3]))
  t.same(await owners.get('phone'), { owner: 'user:alice' })
})

t.test('a closed LevelDB is refused as abstract-level refuses it', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  const target = groupCommitTarget(db)
  await db.close()
  await t.rejects(target.batch([{ type: 'del', key: 'x' }], { valueEncoding: 'buffer' }), { code: 'LEVEL_DATABASE_NOT_OPEN' })
})

t.test('other databases (memory-level) keep the public API', async (t) => {
  const db = await openDatabase('unused', 'memory')
  t.teardown(async () => await db.close())
  t.equal(groupCommitTarget(db), db)
})
