/**
 * What a CONNECT costs the store: a persistent session's client-id claim and
 * its user's newest principal go to LevelDB in one batch, and a user seen for
 * the first time is not read first (issue 17: the connect storm).
 */
import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { spyOnWrites, type ObservedWrite } from '../helpers/write-spy.js'

t.test('each CONNECT of a new device is one LevelDB batch: claim and principal together', async (t) => {
  let writes: ObservedWrite[] = []
  const broker = await startBroker(t, { serverOptions: { onDatabaseOpen: (db) => { writes = spyOnWrites(db) } } })
  const before = writes.length
  for (let i = 0; i < 5; i++) {
    await connect(t, broker.mqttUrl, { clientId: `phone-${i}`, clean: false, username: 'device', password: sign({ sub: `user-${i}` }) })
  }
  // stopping waits for every write behind (the principals' too)
  await broker.stop()
  const connects = writes.slice(before).filter((write) => write.keys.some((key) => /^!(client-owners|known-principals)!/.test(key)))
  t.equal(connects.length, 5, 'one batch per CONNECT')
  for (const [i, write] of connects.entries()) {
    t.same(write.keys.map((key) => key.split('!')[1]).sort(), ['client-owners', 'known-principals'], `CONNECT ${i}: the claim and the principal`)
  }
})
