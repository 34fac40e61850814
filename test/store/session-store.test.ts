import AedesPacket from 'aedes-packet'
import t from 'tap'
import { openDatabase, type Database } from '../../src/store/open-store.js'
import { createSessionPolicy, SessionStore, type PersistedPacket, type SessionPolicy, type SessionStoreOptions } from '../../src/store/session-store.js'
import { makeTempDir } from '../helpers/broker.js'

/** The session store of the database in `dir`, as the broker opens it at start; the caller closes `db`. */
async function openStoreAt (dir: string, options: SessionStoreOptions = {}): Promise<{ db: Database, store: SessionStore }> {
  const db = await openDatabase(dir)
  const store = new SessionStore(db.sublevel('sessions', { valueEncoding: 'buffer' }), options)
  await store.setup({ id: 'broker-1' })
  return { db, store }
}

async function openStore (t: Parameters<typeof makeTempDir>[0], options: SessionStoreOptions = {}): Promise<SessionStore> {
  const { db, store } = await openStoreAt(await makeTempDir(t), options)
  t.teardown(async () => await db.close())
  return store
}

/** The store's policy with some of its decisions given (the rest as createBroker's before the wiring fills them in). */
function policy (given: Partial<SessionPolicy>): SessionPolicy {
  return { ...createSessionPolicy(), ...given }
}

const fakeBroker = { id: 'broker-1', counter: 0 }
const packet = (topic: string, body: string): PersistedPacket =>
  new AedesPacket({ cmd: 'publish', topic, payload: Buffer.from(body), qos: 1, retain: false }, fakeBroker) as unknown as PersistedPacket

/** What aedes' publish pipeline does with a QoS 1 message: the persistent subscriptions it matches, then the enqueue. */
async function enqueue (store: SessionStore, message: PersistedPacket): Promise<void> {
  await store.outgoingEnqueueCombi(await store.subscriptionsByTopic(message.topic), message)
}

async function queued (store: SessionStore, clientId: string): Promise<string[]> {
  const bodies: string[] = []
  for await (const stored of store.outgoingStream({ id: clientId })) bodies.push(stored.payload.toString())
  return bodies
}

t.test('the subscription guard keeps refused filters out of the session', async (t) => {
  const store = await openStore(t, { policy: policy({ subscriptionGuard: (_clientId, topic) => !topic.startsWith('secret/') }) })
  await store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }, { topic: 'secret/#', qos: 1 }])
  t.same((await store.subscriptionsByClient({ id: 'phone' })).map((s) => s.topic), ['news/#'])
})

t.test('the routing hook decides who queues', async (t) => {
  const store = await openStore(t, { policy: policy({ routing: async (subs) => subs.filter((s) => s.clientId !== 'push-only') }) })
  await store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }])
  await store.addSubscriptions({ id: 'push-only' }, [{ topic: 'news/#', qos: 1 }])
  await enqueue(store, packet('news/today', 'one'))
  t.same(await queued(store, 'phone'), ['one'])
  t.same(await queued(store, 'push-only'), [])
})

t.test('deleteSession removes subscriptions and queued messages of that client only', async (t) => {
  const store = await openStore(t)
  for (const id of ['phone', 'phone-2', 'phone:x']) await store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  await enqueue(store, packet('news/today', 'one'))
  await store.deleteSession('phone')
  t.same(await store.subscriptionsByClient({ id: 'phone' }), [])
  t.same(await queued(store, 'phone'), [])
  t.same(await queued(store, 'phone-2'), ['one'], 'a client whose id starts the same keeps its queue')
  t.same(await queued(store, 'phone:x'), ['one'])
  t.same((await store.subscriptionsByTopic('news/today')).map((s) => s.clientId).sort(), ['phone-2', 'phone:x'])
})

t.test('queue writes keep the library key layout: after a restart the library alone reads and clears them', async (t) => {
  const dir = await makeTempDir(t)
  const open = async (): Promise<{ db: Database, store: SessionStore }> => await openStoreAt(dir)
  const before = await open()
  await before.store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }])
  const first = packet('news/today', 'one')
  const second = packet('news/today', 'two')
  await enqueue(before.store, first)
  await enqueue(before.store, second)
  // what aedes does when it sends them: in flight under message ids 1 and 2
  await before.store.outgoingUpdate({ id: 'phone' }, { ...first, messageId: 1 })
  await before.store.outgoingUpdate({ id: 'phone' }, { ...second, messageId: 2 })
  t.match(await before.store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 }), { brokerCounter: first.brokerCounter, messageId: 1 }, 'PUBACK of 1 in the same process')
  // in-flight updates and PUBACK clears are written behind; the broker flushes them when it closes
  await before.store.flush()
  await before.db.close()

  const after = await open()
  t.teardown(async () => await after.db.close())
  const resent: PersistedPacket[] = []
  for await (const stored of after.store.outgoingStream({ id: 'phone' })) resent.push(stored)
  t.same(resent.map((p) => [p.payload.toString(), p.messageId]), [['two', 2]], 'the unacknowledged message is queued under its id')
  // nothing is remembered after a restart: the library's own lookup by message id must find the entry
  t.match(await after.store.outgoingClearMessageId({ id: 'phone' }, { messageId: 2 }), { brokerCounter: second.brokerCounter })
  t.same(await queued(after.store, 'phone'), [])
  const leftovers = await after.db.sublevel('sessions', { valueEncoding: 'buffer' }).keys({ gte: 'outgoing', lt: 'outgoinh' }).all()
  t.same(leftovers, [], 'no queue or in-flight key is left behind')
})

t.test('subscriptions and wills known in memory match the store, across a restart', async (t) => {
  const dir = await makeTempDir(t)
  const open = async (): Promise<{ db: Database, store: SessionStore }> => await openStoreAt(dir)
  const before = await open()
  // ids and filters with the characters the key layout has to survive
  await before.store.addSubscriptions({ id: 'phone:x' }, [{ topic: 'a:b/#', qos: 1 }, { topic: 'news', qos: 0 }])
  await before.store.addSubscriptions({ id: 'gone' }, [{ topic: 'news', qos: 1 }])
  await before.store.removeSubscriptions({ id: 'gone' }, ['news'])
  await before.store.putWill({ id: 'tablette é' }, { topic: 'users/bob/status', payload: Buffer.from('offline'), qos: 1, retain: false })
  await before.store.putWill({ id: 'phone:x' }, { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: false })
  await before.store.delWill({ id: 'phone:x' })
  t.same((await before.store.subscriptionsByClient({ id: 'phone:x' })).map((s) => s.topic).sort(), ['a:b/#', 'news'])
  await before.db.close()

  const after = await open()
  t.teardown(async () => await after.db.close())
  t.same((await after.store.subscriptionsByClient({ id: 'phone:x' })).map((s) => s.topic).sort(), ['a:b/#', 'news'])
  t.same(await after.store.subscriptionsByClient({ id: 'gone' }), [], 'removed filters stay removed')
  t.same(await after.store.subscriptionsByClient({ id: 'never-seen' }), [])
  t.match(await after.store.getWill({ id: 'tablette é' }), { topic: 'users/bob/status' })
  t.equal(await after.store.getWill({ id: 'phone:x' }), undefined, 'a deleted will stays deleted')
  t.match(await after.store.delWill({ id: 'tablette é' }), { topic: 'users/bob/status' })
  t.equal(await after.store.getWill({ id: 'tablette é' }), undefined)
  await after.store.cleanSubscriptions({ id: 'phone:x' })
  t.same(await after.store.subscriptionsByClient({ id: 'phone:x' }), [])
})

t.test('a queue read empty is skipped until a message is queued again', async (t) => {
  const store = await openStore(t)
  await store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }])
  t.same(await queued(store, 'phone'), [], 'never queued')
  await enqueue(store, packet('news/today', 'one'))
  t.same(await queued(store, 'phone'), ['one'])
  await store.deleteSession('phone')
  t.same(await queued(store, 'phone'), [], 'read after the session was deleted')
  await store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }])
  await enqueue(store, packet('news/today', 'two'))
  t.same(await queued(store, 'phone'), ['two'], 'queued again after an empty read')
})

t.test('a queue read right after a PUBACK waits for the written-behind clear: no redelivery on a quick reconnect', async (t) => {
  const store = await openStore(t)
  await store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  await enqueue(store, message)
  // delivered and acknowledged; neither write has reached LevelDB when the read below starts
  await store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 1 })
  await store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 })
  t.same(await queued(store, 'phone'), [], 'the acknowledged message is not read back')
  await enqueue(store, packet('news/today', 'two'))
  t.same(await queued(store, 'phone'), ['two'])
})

/** The session store's keys on disk under a prefix ending in ':'. */
async function keysOnDisk (db: Database, prefix: string): Promise<string[]> {
  return await db.sublevel('sessions', { valueEncoding: 'buffer' }).keys({ gte: prefix, lt: `${prefix.slice(0, -1)};` }).all()
}

/** Every message the store holds on disk: fresh records, queue entries, in-flight ids. */
async function messagesOnDisk (db: Database): Promise<string[]> {
  return [...await keysOnDisk(db, 'fresh:'), ...await keysOnDisk(db, 'outgoing:'), ...await keysOnDisk(db, 'outgoing-id:')]
}

/** What the library alone reads back from a client's queue after a restart: [payload, message id]. */
async function queuedAfterRestart (store: SessionStore, clientId: string): Promise<Array<[string, number | undefined]>> {
  const entries: Array<[string, number | undefined]> = []
  for await (const stored of store.outgoingStream({ id: clientId })) entries.push([stored.payload.toString(), stored.messageId ?? undefined])
  return entries
}

t.test('a message to several subscribers is one record; who acknowledges in time never gets a queue entry', async (t) => {
  const dir = await makeTempDir(t)
  const before = await openStoreAt(dir)
  for (const id of ['phone', 'tablet', 'watch']) await before.store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  await enqueue(before.store, message)
  t.equal((await keysOnDisk(before.db, 'fresh:')).length, 1, 'one record, written before the publisher is acknowledged')
  t.same(await keysOnDisk(before.db, 'outgoing:'), [], 'no queue entry yet')
  // delivered to two of them; the phone acknowledges, the tablet does not, the watch is offline
  await before.store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 1 })
  await before.store.outgoingUpdate({ id: 'tablet' }, { ...message, messageId: 7 })
  t.match(await before.store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 }), { brokerCounter: message.brokerCounter, messageId: 1 })
  await before.store.flush()
  t.same(await keysOnDisk(before.db, 'fresh:'), [], 'settled: the record is gone')
  const queueKeys = await keysOnDisk(before.db, 'outgoing:')
  t.same(queueKeys.map((key) => key.split(':')[1]).sort(), ['tablet', 'watch'], 'queue entries of the two that did not acknowledge')
  await before.db.close()

  const after = await openStoreAt(dir)
  t.teardown(async () => await after.db.close())
  t.same(await queuedAfterRestart(after.store, 'tablet'), [['one', 7]], 'in flight under its message id')
  t.same(await queuedAfterRestart(after.store, 'watch'), [['one', undefined]], 'queued, never sent')
  t.same(await queuedAfterRestart(after.store, 'phone'), [])
  // the library's own lookup by message id finds the tablet's entry
  t.match(await after.store.outgoingClearMessageId({ id: 'tablet' }, { messageId: 7 }), { brokerCounter: message.brokerCounter })
  t.same(await queuedAfterRestart(after.store, 'tablet'), [])
})

t.test('a queue read does not wait for the hold: fresh messages are settled first', async (t) => {
  const store = await openStore(t)
  for (const id of ['phone', 'tablet']) await store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  await enqueue(store, message)
  await store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 3 })
  t.same(await queuedAfterRestart(store, 'phone'), [['one', 3]], 'a reconnect right away gets it under the same id [MQTT-4.4.0-1]')
  t.same(await queuedAfterRestart(store, 'tablet'), [['one', undefined]])
  // acknowledged after it was settled: the entry written meanwhile is deleted
  await store.outgoingClearMessageId({ id: 'phone' }, { messageId: 3 })
  t.same(await queuedAfterRestart(store, 'phone'), [])
})

t.test('after a crash, each record becomes a queue entry for every one of its recipients', async (t) => {
  const dir = await makeTempDir(t)
  const before = await openStoreAt(dir, { holdMs: 60_000 })
  for (const id of ['phone', 'tablet']) await before.store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  await enqueue(before.store, message)
  // the phone acknowledged, in memory only; then the process dies without flushing
  await before.store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 1 })
  await before.store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 })
  await before.db.close()

  const after = await openStoreAt(dir)
  t.teardown(async () => await after.db.close())
  t.same(await queuedAfterRestart(after.store, 'tablet'), [['one', undefined]], 'not lost')
  t.same(await queuedAfterRestart(after.store, 'phone'), [['one', undefined]], 'delivered again: what a crash costs at QoS 1 is a duplicate')
  t.same(await keysOnDisk(after.db, 'fresh:'), [], 'the record is replaced by the queue entries')
})

t.test('fresh messages are settled after the hold without any read', async (t) => {
  const dir = await makeTempDir(t)
  const { db, store } = await openStoreAt(dir, { holdMs: 5 })
  t.teardown(async () => {
    await store.flush()
    await db.close()
  })
  for (const id of ['phone', 'tablet']) await store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  await enqueue(store, packet('news/today', 'one'))
  // no event marks a batch written behind: look at the disk until the entries are there (bounded)
  const deadline = Date.now() + 5000
  let entries: string[] = []
  while (entries.length < 2 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5))
    entries = await keysOnDisk(db, 'outgoing:')
  }
  t.equal(entries.length, 2, 'both queue entries written by the timers')
  t.same(await keysOnDisk(db, 'fresh:'), [], 'and the record deleted in the same batch')
})

t.test('recipients all connected: the message waits for their acknowledgements, and then nothing is written', async (t) => {
  const dir = await makeTempDir(t)
  const { db, store } = await openStoreAt(dir, { ackWaitMs: 60_000, policy: policy({ isConnected: () => true }) })
  t.teardown(async () => await db.close())
  for (const id of ['phone', 'tablet']) await store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  store.expectAcknowledgement(message)
  await enqueue(store, message)
  let safe = false
  const acknowledged = store.safeToAck(message)?.then(() => { safe = true })
  t.ok(acknowledged, 'the publisher has to wait')
  await store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 1 })
  await store.outgoingUpdate({ id: 'tablet' }, { ...message, messageId: 2 })
  await store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(safe, false, 'no PUBACK while the tablet has not acknowledged')
  await store.outgoingClearMessageId({ id: 'tablet' }, { messageId: 2 })
  await acknowledged
  await store.flush()
  t.same(await messagesOnDisk(db), [], 'no record, no queue entry, nothing in flight: nothing was ever written')
})

t.test('a PUBACK from a client with nothing stored (a clean session) neither reads nor flushes the store', async (t) => {
  const dir = await makeTempDir(t)
  const { db, store } = await openStoreAt(dir, { ackWaitMs: 60_000, policy: policy({ isConnected: () => true }) })
  t.teardown(async () => await db.close())
  await store.addSubscriptions({ id: 'phone' }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  store.expectAcknowledgement(message)
  await enqueue(store, message)
  // the dashboard (clean session, so no stored subscription) got the message live and acknowledges it
  t.equal(await store.outgoingClearMessageId({ id: 'dashboard' }, { messageId: 1 }), undefined, 'nothing of it was stored')
  t.same(await messagesOnDisk(db), [], 'the phone\'s message still waits for its acknowledgement: nothing was forced to disk')
  await store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 1 })
  await store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 })
  await store.safeToAck(message)
  await store.flush()
  t.same(await messagesOnDisk(db), [], 'and nothing was ever written')
})

t.test('recipients all connected but one does not acknowledge in time: the record is written before the PUBACK', async (t) => {
  const dir = await makeTempDir(t)
  const before = await openStoreAt(dir, { ackWaitMs: 5, holdMs: 60_000, policy: policy({ isConnected: () => true }) })
  for (const id of ['phone', 'tablet']) await before.store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
  const message = packet('news/today', 'one')
  before.store.expectAcknowledgement(message)
  await enqueue(before.store, message)
  await before.store.outgoingUpdate({ id: 'phone' }, { ...message, messageId: 1 })
  await before.store.outgoingClearMessageId({ id: 'phone' }, { messageId: 1 })
  await before.store.safeToAck(message)
  t.equal((await keysOnDisk(before.db, 'fresh:')).length, 1, 'the record is on disk when the publisher may be acknowledged')
  // the process dies now, without flushing
  await before.db.close()

  const after = await openStoreAt(dir)
  t.teardown(async () => await after.db.close())
  t.same(await queuedAfterRestart(after.store, 'tablet'), [['one', undefined]], 'not lost')
  t.same(await queuedAfterRestart(after.store, 'phone'), [], 'the record named only who had not acknowledged')
})

t.test('a recipient offline: the message is on disk when enqueue returns', async (t) => {
  const cases = [
    { recipients: ['phone', 'tablet'], written: false, why: 'all connected: it waits for them' },
    { recipients: ['phone', 'watch'], written: true, why: 'the watch is offline' },
    { recipients: ['watch'], written: true, why: 'the only recipient is offline' },
  ]
  for (const { recipients, written, why } of cases) {
    const { db, store } = await openStoreAt(await makeTempDir(t), { ackWaitMs: 60_000, policy: policy({ isConnected: (clientId) => clientId !== 'watch' }) })
    t.teardown(async () => await db.close())
    for (const id of recipients) await store.addSubscriptions({ id }, [{ topic: 'news/#', qos: 1 }])
    const message = packet('news/today', 'one')
    store.expectAcknowledgement(message)
    await enqueue(store, message)
    const onDisk = [...await keysOnDisk(db, 'fresh:'), ...await keysOnDisk(db, 'outgoing:')]
    t.equal(onDisk.length, written ? 1 : 0, why)
    await store.flush()
    await store.safeToAck(message)
  }
})
