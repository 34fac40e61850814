/**
 * What a CONNECT costs the store (issue 17: the connect storm): a persistent
 * session's client-id claim, one batch per CONNECT, and a user seen for the
 * first time is not read first. The user's newest principal is written too,
 * in the same batch, for users who own an installation: nothing reads
 * anyone else's (the relay decides for installations' owners).
 */
import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { eventually } from '../helpers/eventually.js'
import { api } from '../helpers/http.js'
import { spyOnWrites, type ObservedWrite } from '../helpers/write-spy.js'

const DIRECTORY_KEY = /^!(client-owners|known-principals)!/
const sublevelsOf = (write: ObservedWrite): string[] => write.keys.map((key) => key.split('!')[1] ?? '?').sort()
const nowSec = (): number => Math.floor(Date.now() / 1000)

t.test('each CONNECT of a new device without an installation is one LevelDB batch: its claim, no principal', async (t) => {
  let writes: ObservedWrite[] = []
  const broker = await startBroker(t, { serverOptions: { onDatabaseOpen: (db) => { writes = spyOnWrites(db) } } })
  const before = writes.length
  for (let i = 0; i < 5; i++) {
    await connect(t, broker.mqttUrl, { clientId: `phone-${i}`, clean: false, username: 'device', password: sign({ sub: `user-${i}` }) })
  }
  // stopping waits for every write behind (the principals' too)
  await broker.stop()
  const connects = writes.slice(before).filter((write) => write.keys.some((key) => DIRECTORY_KEY.test(key)))
  t.equal(connects.length, 5, 'one batch per CONNECT')
  for (const [i, write] of connects.entries()) t.same(sublevelsOf(write), ['client-owners'], `CONNECT ${i}: the claim only`)
})

t.test('an installation owner\'s principal: written at registration, then with the CONNECT that brings a newer token', async (t) => {
  let writes: ObservedWrite[] = []
  const broker = await startBroker(t, { serverOptions: { onDatabaseOpen: (db) => { writes = spyOnWrites(db) } } })
  const registered = writes.length
  const created = await api(broker, 'POST', '/v1/installations', { token: sign({ sub: 'alice', groups: ['ops'], iat: nowSec() - 600 }) })
  t.equal(created.status, 201)
  // written behind the call (no caller waits for a principal), done before the CONNECTs below
  await eventually('the registering token written as alice\'s known principal', () =>
    writes.slice(registered).some((write) => write.done && sublevelsOf(write).includes('known-principals')))
  t.pass('the registering token is alice\'s known principal')

  const connected = writes.length
  const newer = sign({ sub: 'alice', groups: [] })
  await connect(t, broker.mqttUrl, { clientId: created.body.installationId as string, clean: false, password: newer })
  await eventually('the newer token written as her known principal', () =>
    writes.slice(connected).some((write) => write.done && sublevelsOf(write).includes('known-principals')))
  const laptop = writes.length
  await connect(t, broker.mqttUrl, { clientId: 'alice-laptop', clean: false, password: newer })
  await broker.stop()
  const device = writes.slice(connected, laptop).filter((write) => write.keys.some((key) => DIRECTORY_KEY.test(key)))
  t.same(device.map(sublevelsOf), [['known-principals']], 'her device (its id claimed at registration): the newer principal')
  const other = writes.slice(laptop).filter((write) => write.keys.some((key) => DIRECTORY_KEY.test(key)))
  t.same(other.map(sublevelsOf), [['client-owners']], 'her laptop with the same token: its claim, nothing new about her')
})
