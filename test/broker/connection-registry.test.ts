import t from 'tap'
import type { PrincipalAcl } from '../../src/acl/index.js'
import { ConnectionRegistry, type Session } from '../../src/broker/connection-registry.js'

const acl: PrincipalAcl = { canPublish: () => true, canSubscribe: () => true, canReceive: () => true }
const session = (clientId: string, owner: string): Session => ({ clientId, owner, acl, expiresAt: null })

t.test('connections by client id and by owner', async (t) => {
  const registry = new ConnectionRegistry<object>()
  const phone = {}
  const laptop = {}
  const bobs = {}
  registry.add(phone, session('alice-phone', 'user:alice'))
  registry.add(laptop, session('alice-laptop', 'user:alice'))
  registry.add(bobs, session('bob-1', 'user:bob'))
  t.equal(registry.size, 3)
  t.equal(registry.get(phone)?.clientId, 'alice-phone')
  t.equal(registry.byClientId('alice-laptop')?.owner, 'user:alice')
  t.equal(registry.connectionByClientId('bob-1'), bobs)
  t.equal(registry.countForOwner('user:alice', 'new-id'), 2)
  t.equal(registry.countForOwner('user:alice', 'alice-phone'), 1, 'the connection about to be taken over does not count')
  t.equal(registry.countForOwner('user:bob', 'x'), 1)
  t.equal(registry.countForOwner('user:carol', 'x'), 0)

  registry.remove(phone)
  registry.remove(phone)
  t.equal(registry.size, 2, 'removing twice removes once')
  t.equal(registry.get(phone), undefined)
  t.equal(registry.byClientId('alice-phone'), undefined)
  t.equal(registry.countForOwner('user:alice', 'x'), 1)
  registry.remove(laptop)
  registry.remove(bobs)
  t.equal(registry.size, 0)
  t.equal(registry.countForOwner('user:alice', 'x'), 0)
})

t.test('a takeover: the newest connection of a client id is the one known by id', async (t) => {
  const registry = new ConnectionRegistry<object>()
  const old = {}
  const fresh = {}
  registry.add(old, session('alice-phone', 'user:alice'))
  registry.add(fresh, session('alice-phone', 'user:alice'))
  t.equal(registry.connectionByClientId('alice-phone'), fresh)
  registry.remove(old)
  t.equal(registry.connectionByClientId('alice-phone'), fresh, 'the old one closing does not forget the new one')
  t.equal(registry.size, 1)
})

t.test('adding the same connection again replaces its session', async (t) => {
  const registry = new ConnectionRegistry<object>()
  const connection = {}
  registry.add(connection, session('a', 'user:alice'))
  registry.add(connection, session('b', 'user:bob'))
  t.equal(registry.size, 1)
  t.equal(registry.countForOwner('user:alice', 'x'), 0)
  t.equal(registry.countForOwner('user:bob', 'x'), 1)
  t.equal(registry.byClientId('b')?.owner, 'user:bob')
})

t.test('connections are listed once per client id, the newest, by owner or all, with when each joined', async (t) => {
  const registry = new ConnectionRegistry<object>()
  const before = Date.now()
  const old = {}
  const fresh = {}
  const bobs = {}
  registry.add(old, session('alice-phone', 'user:alice'))
  registry.add(fresh, session('alice-phone', 'user:alice'))
  registry.add(bobs, session('bob-1', 'user:bob'))
  const ids = (owner?: string): string[] => [...registry.connections(owner)].map(([, s]) => s.clientId).sort()
  t.same(ids(), ['alice-phone', 'bob-1'], 'the connection being taken over is not listed')
  t.same([...registry.connections('user:alice')].map(([c]) => c), [fresh])
  t.same(ids('user:carol'), [])
  t.ok((registry.connectedAt(fresh) ?? 0) >= before)
  registry.remove(fresh)
  t.same(ids('user:alice'), [], 'the old connection of a replaced client id is not listed either')
  t.equal(registry.connectedAt({}), undefined)
})
