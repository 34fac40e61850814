/** The LevelDB side of the relay: the outbox and the batched installation reads the worker relies on. */
import t from 'tap'
import type { RelayJob } from '../../plugins/push-core/index.js'
import { openInstallationStore, type Installation } from '../../src/store/installations.js'
import { openDatabase } from '../../src/store/open-store.js'
import { levelOutboxStorage } from '../../src/store/relay-outbox.js'
import { makeTempDir } from '../helpers/broker.js'

const job = (id: string): RelayJob => ({
  id,
  installationId: `inst-${id}`,
  content: { kind: 'raw', messageId: `m-${id}`, topic: 'users/alice/inbox', payload: 'hi' },
  createdAt: 1,
  expiresAt: 2,
  attempts: 0,
  notBefore: 1,
})

t.test('deleteMany removes exactly the settled jobs, and they stay gone after a reopen', async (t) => {
  const dir = await makeTempDir(t)
  let db = await openDatabase(dir)
  const outbox = levelOutboxStorage(db)
  await outbox.putMany(['a', 'b', 'c', 'd'].map(job))
  await outbox.deleteMany(['a', 'c', 'not-there'])
  await outbox.deleteMany([])
  await db.close()
  db = await openDatabase(dir)
  t.teardown(async () => await db.close())
  const left: string[] = []
  for await (const j of levelOutboxStorage(db).loadAll()) left.push(j.id)
  t.same(left.sort(), ['b', 'd'])
})

t.test('installations getMany: in the order asked, undefined for unknown ids', async (t) => {
  const db = await openDatabase(await makeTempDir(t))
  t.teardown(async () => await db.close())
  const store = await openInstallationStore(db)
  const installation = (id: string): Installation => ({ id, owner: `user-${id}`, ownerGroups: [], mqtt: false, pushToken: null, createdAt: 'x', updatedAt: 'x' })
  await store.put(installation('one'))
  await store.put(installation('two'))
  const found = await store.getMany(['two', 'missing', 'one'])
  t.same(found.map((i) => i?.owner), ['user-two', undefined, 'user-one'])
  t.same(await store.getMany([]), [])
})
