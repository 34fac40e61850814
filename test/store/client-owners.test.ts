import t from 'tap'
import { openClientOwnerStore } from '../../src/store/client-owners.js'
import { openDatabase } from '../../src/store/open-store.js'
import { makeTempDir } from '../helpers/broker.js'

t.test('claims are answered from memory and survive a restart', async (t) => {
  const dir = await makeTempDir(t)
  const first = await openDatabase(dir)
  const owners = await openClientOwnerStore(first)
  t.equal(owners.get('phone'), undefined)
  await Promise.all([
    owners.set('phone', { owner: 'user:alice', installation: false }),
    owners.set('inst-1', { owner: 'user:bob', installation: true }),
    owners.set('gone', { owner: 'user:carol', installation: false }),
  ])
  await owners.delete('gone')
  t.same(owners.get('phone'), { owner: 'user:alice', installation: false })
  t.equal(owners.get('gone'), undefined)
  await first.close()

  const second = await openDatabase(dir)
  t.teardown(async () => await second.close())
  const reopened = await openClientOwnerStore(second)
  t.same(reopened.get('phone'), { owner: 'user:alice', installation: false })
  t.same(reopened.get('inst-1'), { owner: 'user:bob', installation: true })
  t.equal(reopened.get('gone'), undefined, 'a released claim stays released')
  // what is on disk reads back through the sublevel's own json encoding
  t.same(await second.sublevel('client-owners', { valueEncoding: 'json' }).get('phone'), { owner: 'user:alice', installation: false })
})
