/**
 * Clean and persistent sessions side by side on QoS 1 (issue 17: a clean
 * session's PUBACK no longer goes through the session store's lookup): a clean
 * mosquitto_sub and a persistent mqtt.js subscriber with overlapping filters
 * get every message once; the persistent one's acknowledgements clear its
 * queue, the clean one's touch nothing of it; a persistent session resumed
 * with clean=true has its queue discarded.
 */
import t from 'tap'
import { brokerEvent, connect, sign, startBroker } from '../helpers/broker.js'
import { mosquittoSubOne } from '../helpers/mosquitto-sub.js'

const alice = sign({ sub: 'alice' })
const service = sign({ sub: 'backend', role: 'service' })

t.test('a clean mosquitto_sub and a persistent mqtt.js subscriber with overlapping filters: each message once, nothing queued again', async (t) => {
  const broker = await startBroker(t)
  const phoneGot: string[] = []
  const phone = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: alice }, (_topic, payload) => { phoneGot.push(payload.toString()) })
  await phone.subscribeAsync({ 'users/alice/#': { qos: 1 }, 'users/alice/news': { qos: 1 } })
  const dashboard = await mosquittoSubOne(t, broker, { clientId: 'alice-dashboard', token: alice, topic: 'users/alice/#', qos: 1, count: 20 })

  const publisher = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  const sent = Array.from({ length: 20 }, (_, i) => `m${i}`)
  for (const body of sent) await publisher.publishAsync('users/alice/news', body, { qos: 1 })
  t.same((await dashboard.message).trim().split('\n'), sent, 'the clean session got each message once, in order')
  while (phoneGot.length < sent.length) await new Promise((resolve) => phone.once('message', resolve))

  const left = brokerEvent(broker, 'clientDisconnect', 'alice-phone')
  await phone.endAsync()
  await left
  await publisher.publishAsync('users/alice/news', 'later', { qos: 1 })
  const resumedGot: string[] = []
  const resumed = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', clean: false, password: alice }, (_topic, payload) => { resumedGot.push(payload.toString()) })
  while (resumedGot.length < 1) await new Promise((resolve) => resumed.once('message', resolve))
  // a marker after it: anything queued again would have come before
  await publisher.publishAsync('users/alice/news', 'marker', { qos: 1 })
  while (!resumedGot.includes('marker')) await new Promise((resolve) => resumed.once('message', resolve))
  t.same(phoneGot, sent, 'the persistent session got each message once')
  t.same(resumedGot, ['later', 'marker'], 'only what came while it was away: its acknowledgements cleared its queue')
})

t.test('a persistent session resumed with clean=true has its queue discarded, and nothing comes back after', async (t) => {
  const broker = await startBroker(t)
  const tablet = await connect(t, broker.mqttUrl, { clientId: 'alice-tablet', clean: false, password: alice })
  await tablet.subscribeAsync('users/alice/#', { qos: 1 })
  const left = brokerEvent(broker, 'clientDisconnect', 'alice-tablet')
  await tablet.endAsync()
  await left
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'backend', password: service })
  for (const body of ['q1', 'q2', 'q3']) await publisher.publishAsync('users/alice/news', body, { qos: 1 })

  /** Connects alice-tablet with `clean`, subscribes, and collects what it gets until `marker` (published after the subscription) arrives. */
  async function gotUntil (clean: boolean, marker: string): Promise<string[]> {
    const got: string[] = []
    const session = await connect(t, broker.mqttUrl, { clientId: 'alice-tablet', clean, password: alice }, (_topic, payload) => { got.push(payload.toString()) })
    await session.subscribeAsync('users/alice/#', { qos: 1 })
    await publisher.publishAsync('users/alice/news', marker, { qos: 1 })
    while (!got.includes(marker)) await new Promise((resolve) => session.once('message', resolve))
    await session.endAsync()
    return got
  }

  t.same(await gotUntil(true, 'live'), ['live'], 'the clean session gets none of the old queue')
  t.same(await gotUntil(false, 'marker'), ['marker'], 'the discarded queue does not come back in a new persistent session')
})
