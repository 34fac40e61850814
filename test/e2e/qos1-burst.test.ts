import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'

// A burst of concurrent QoS1 publishes finishes persisting out of order; aedes'
// per-broker counter dedupe then dropped acknowledged messages (see broker/hooks.ts).
t.test('every acknowledged QoS1 message of a concurrent burst reaches every persistent subscriber', { timeout: 240_000 }, async (t) => {
  const broker = await startBroker(t)
  const grants = { acl: { pub: ['burst/#'], sub: ['burst/#'] } }
  const subscribers = 40
  const messages = 2000
  const counts = new Array<number>(subscribers).fill(0)
  let complete = 0
  let onComplete = (): void => {}
  const allDelivered = new Promise<void>((resolve) => { onComplete = resolve })
  for (let i = 0; i < subscribers; i++) {
    const client = await connect(t, broker.mqttUrl, { clientId: `sub-${i}`, clean: false, password: sign({ sub: `u${i}`, ...grants }) })
    await client.subscribeAsync('burst/t', { qos: 1 })
    client.on('message', () => {
      counts[i] = (counts[i] ?? 0) + 1
      if (counts[i] === messages && ++complete === subscribers) onComplete()
    })
  }
  const publisher = await connect(t, broker.mqttUrl, { clientId: 'pub', password: sign({ sub: 'p', ...grants }) })
  await Promise.all(Array.from({ length: messages }, async (_, n) => await publisher.publishAsync('burst/t', `m${n}`, { qos: 1 })))
  await allDelivered
  t.same(counts, new Array(subscribers).fill(messages))
})
