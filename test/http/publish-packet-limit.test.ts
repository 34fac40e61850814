import t from 'tap'
import { sign, startBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { connectInbox, text } from '../helpers/mqtt-inbox.js'

// Issue 14, item 14: a 262,144-byte payload was accepted by POST /v1/publish and
// delivered in a PUBLISH packet larger than limits.maxPacketBytes.

const alice = sign({ sub: 'alice' })
const MAX_PACKET = 1024
const TOPIC = 'users/alice/big' // 15 bytes

// A PUBLISH of 1024 bytes: 1 (type) + 2 (remaining length 1021) + 2 + 15 (topic) [+ 2 (packet id)] + payload
const QOS0_ROOM = 1004
const QOS1_ROOM = 1002

t.test('POST /v1/publish: the whole MQTT packet must fit in limits.maxPacketBytes', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxPacketBytes: MAX_PACKET } } })
  const inbox = await connectInbox(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  await inbox.client.subscribeAsync('users/alice/#', { qos: 1 })

  for (const [qos, room] of [[0, QOS0_ROOM], [1, QOS1_ROOM]] as const) {
    const fits = await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: TOPIC, payload: 'f'.repeat(room), qos } })
    t.equal(fits.status, 202, `QoS ${qos}: a payload of ${room} bytes makes a packet of exactly ${MAX_PACKET}: accepted`)
    const delivered = await inbox.next()
    t.equal(delivered.payload.length, room, 'and delivered whole')

    const over = await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: TOPIC, payload: 'o'.repeat(room + 1), qos } })
    t.equal(over.status, 413, `QoS ${qos}: one byte more is refused`)
    t.equal(over.body.error.code, 'PAYLOAD_TOO_LARGE')
    t.match(over.body.error.message, /limits\.maxPacketBytes/, 'the message names the limit')
    // nothing published: the next message the subscriber gets is the marker sent after the refusal
    t.equal((await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/marker', payload: `after ${qos}`, qos } })).status, 202)
    t.equal(text(await inbox.next()), `after ${qos}`, 'the refused payload was not published')
  }

  // 15 characters like TOPIC, 16 bytes
  const multiByte = await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/büg', payload: 'x'.repeat(QOS0_ROOM), qos: 0 } })
  t.equal(multiByte.status, 413, 'the topic counts in UTF-8 bytes (ü takes two)')
})

t.test('the reported case: a payload of exactly limits.maxPacketBytes (default 262,144)', async (t) => {
  const broker = await startBroker(t)
  const over = await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: TOPIC, payload: 'x'.repeat(262_144) } })
  t.equal(over.status, 413)
  t.equal(over.body.error.code, 'PAYLOAD_TOO_LARGE')
  // 1 + 3 (remaining length 262,140) + 2 + 15 + payload = 262,144
  const fits = await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: TOPIC, payload: 'x'.repeat(262_123) } })
  t.equal(fits.status, 202, 'the largest payload that fits is accepted')
})

t.test('POST /v1/push: the envelope must fit in one packet too', async (t) => {
  const broker = await startBroker(t, { overrides: { limits: { maxPacketBytes: MAX_PACKET } } })
  const inbox = await connectInbox(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  await inbox.client.subscribeAsync('users/alice/#', { qos: 1 })

  // within the 4096 bytes of push content, but the envelope around it is over 1024
  const over = await api(broker, 'POST', '/v1/push', { token: alice, body: { to: { topic: 'users/alice/news' }, data: { text: 'o'.repeat(1200) } } })
  t.equal(over.status, 413, 'refused')
  t.equal(over.body.error.code, 'PAYLOAD_TOO_LARGE')

  const small = await api(broker, 'POST', '/v1/push', { token: alice, body: { to: { topic: 'users/alice/news' }, data: { text: 'small' } } })
  t.equal(small.status, 202, 'a push that fits is accepted')
  const received = JSON.parse(text(await inbox.next())) as { id: string, data: Record<string, string> }
  t.equal(received.id, small.body.id, 'and is the first message the device gets: the refused one went nowhere')
  t.strictSame(received.data, { text: 'small' })

  const notOverMqtt = await api(broker, 'POST', '/v1/push', { token: alice, body: { to: { topic: 'users/alice/news' }, data: { text: 'o'.repeat(1200) }, mqtt: { enabled: false } } })
  t.equal(notOverMqtt.status, 202, 'with mqtt.enabled false no MQTT packet is made: only the relay limits apply')
})
