import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'

// [MQTT-3.1.2-8] the will is published when the network connection closes without a DISCONNECT;
// [MQTT-3.1.2-10] and not after a DISCONNECT
for (const qos of [0, 1] as const) {
  t.test(`a QoS ${qos} will reaches subscribers when the connection drops, not after DISCONNECT`, async (t) => {
    const broker = await startBroker(t)
    const received: string[] = []
    let onMessage = (): void => {}
    const watcher = await connect(t, broker.mqttUrl, { clientId: 'watcher', clean: false, password: sign({ sub: 'alice' }) }, (_topic, payload) => {
      received.push(String(payload))
      onMessage()
    })
    await watcher.subscribeAsync('users/alice/status', { qos: 1 })

    const will = { topic: 'users/alice/status', qos, retain: false }
    const tablet = await connect(t, broker.mqttUrl, { clientId: 'tablet', password: sign({ sub: 'alice' }), will: { ...will, payload: Buffer.from('tablet offline') } })
    await tablet.endAsync()
    const phone = await connect(t, broker.mqttUrl, { clientId: 'phone', password: sign({ sub: 'alice' }), will: { ...will, payload: Buffer.from('phone offline') }, reconnectPeriod: 0 })
    const arrived = new Promise<void>((resolve) => { onMessage = resolve })
    phone.stream.destroy()
    await arrived
    // the watcher gets messages in the order the broker published them: a will of the tablet would have come first
    t.same(received, ['phone offline'])
  })
}
