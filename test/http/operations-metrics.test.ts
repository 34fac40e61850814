/**
 * The operations metrics of issue 18 with their labels, and `/readyz` failing
 * when the store cannot be written although no write has failed yet.
 */
import t from 'tap'
import type { Database } from '../../src/store/open-store.js'
import type { WriteImplementation } from '../../src/store/storage-guard.js'
import { brokerEvent, connackCode, connect, offlineSession, sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })
const service = sign({ sub: 'backend', role: 'service' })

async function scrape (broker: TestBroker): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${broker.ports.http}/metrics`)
  return await response.text()
}

/** The value of one series (name and labels exactly as exposed), or undefined when it is not there. */
function series (text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? '' : `{${labels}}`} `))
  return line === undefined ? undefined : Number(line.split(' ').pop())
}

t.test('connects, disconnects by reason and refusals by error code are counted', async (t) => {
  const broker = await startBroker(t)
  const clean = await connect(t, broker.mqttUrl, { clientId: 'leaves', password: alice })
  const left = brokerEvent(broker, 'clientDisconnect', 'leaves')
  await clean.endAsync()
  await left
  await connect(t, broker.mqttUrl, { clientId: 'kicked', password: alice })
  const kicked = brokerEvent(broker, 'clientDisconnect', 'kicked')
  t.equal((await api(broker, 'DELETE', '/v1/admin/clients/kicked/connection', { token: admin })).status, 204)
  await kicked
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'bad', username: 'x', password: 'not-a-jwt' }), 4)
  t.equal(await connackCode(broker.mqttUrl, { clientId: 'bad', username: 'x' }), 4)

  const text = await scrape(broker)
  t.equal(series(text, 'herald_mqtt_connects_total'), 2)
  t.equal(series(text, 'herald_mqtt_disconnects_total', 'reason="disconnect"'), 1, 'DISCONNECT sent')
  t.equal(series(text, 'herald_mqtt_disconnects_total', 'reason="closed"'), 1, 'closed by the server')
  t.equal(series(text, 'herald_mqtt_connects_refused_total', 'reason="TOKEN_INVALID"'), 1)
  t.equal(series(text, 'herald_mqtt_connects_refused_total', 'reason="TOKEN_MISSING"'), 1)
})

t.test('HTTP request durations by route pattern, never the raw URL; queue and dead-letter gauges', async (t) => {
  const broker = await startBroker(t)
  await offlineSession(t, broker, 'alice-phone', alice, 'users/alice/news')
  for (let i = 0; i < 2; i++) t.equal((await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/news', payload: 'x', qos: 1 } })).status, 202)
  for (const id of ['alice-phone', 'someone-else']) await api(broker, 'GET', `/v1/admin/clients/${id}`, { token: admin })

  const text = await scrape(broker)
  t.equal(series(text, 'herald_http_request_duration_seconds_count', 'method="GET",route="/v1/admin/clients/:clientId",status="200"'), 1)
  t.equal(series(text, 'herald_http_request_duration_seconds_count', 'method="GET",route="/v1/admin/clients/:clientId",status="404"'), 1)
  t.equal(series(text, 'herald_http_request_duration_seconds_count', 'method="POST",route="/v1/publish",status="202"'), 2)
  t.ok(series(text, 'herald_http_request_duration_seconds_bucket', 'le="+Inf",method="POST",route="/v1/publish",status="202"') === 2, 'buckets with the same labels')
  t.notOk(text.includes('alice-phone'), 'no raw URL (client id) in any label')
  t.equal(series(text, 'herald_session_queued_sessions'), 1)
  t.equal(series(text, 'herald_session_queued_messages'), 2)
  t.equal(series(text, 'herald_relay_dead_letters'), 0)
})

t.test('/readyz fails as soon as the store cannot be written, before any other write has failed, and recovers', async (t) => {
  let failing = false
  const broker = await startBroker(t, {
    // the storage guard wraps the database's own write methods: an I/O error below it is what a dead disk gives
    serverOptions: {
      onDatabaseOpen (db: Database) {
        const level = db as unknown as WriteImplementation
        const del = level._del.bind(db)
        level._del = async (key, options) => {
          if (failing) throw Object.assign(new Error('IO error: /data/db/000005.log: Input/output error'), { code: 'LEVEL_IO_ERROR' })
          await del(key, options)
        }
      },
    },
  })
  const ready = async (): Promise<{ status: number, code?: string }> => {
    const response = await api(broker, 'GET', '/readyz')
    return { status: response.status, code: response.body?.error?.code }
  }
  t.same(await ready(), { status: 200, code: undefined })
  failing = true
  // the probe's last outcome answers for a second
  let answer = await ready()
  const deadline = Date.now() + 5000
  while (answer.status === 200 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    answer = await ready()
  }
  t.same(answer, { status: 503, code: 'SERVER_UNAVAILABLE' }, 'a write the store refuses makes /readyz fail')
  t.equal(series(await scrape(broker), 'herald_storage_writable'), 0, 'and the store stops writing until it heals')
  failing = false
  while ((await ready()).status !== 200 && Date.now() < deadline + 5000) await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(await ready(), { status: 200, code: undefined }, 'healed')
})

t.test('messages in (MQTT and HTTP) and deliveries out are counted, and counted again after a scrape', async (t) => {
  const broker = await startBroker(t)
  const received: string[] = []
  const reader = await connect(t, broker.mqttUrl, { clientId: 'reader', password: alice }, (_topic, payload) => { received.push(payload.toString()) })
  await reader.subscribeAsync('users/alice/#', { qos: 0 })
  const writer = await connect(t, broker.mqttUrl, { clientId: 'writer', password: alice })
  const arrived = async (n: number): Promise<void> => {
    while (received.length < n) await new Promise((resolve) => reader.once('message', resolve))
  }
  for (const body of ['1', '2', '3']) await writer.publishAsync('users/alice/news', body, { qos: 1 })
  await arrived(3)
  let text = await scrape(broker)
  t.equal(series(text, 'herald_messages_in_total', 'transport="mqtt"'), 3)
  t.equal(series(text, 'herald_mqtt_messages_out_total'), 3)

  t.equal((await api(broker, 'POST', '/v1/publish', { token: service, body: { topic: 'users/alice/news', payload: '4', qos: 0 } })).status, 202)
  await writer.publishAsync('users/alice/news', '5', { qos: 1 })
  await arrived(5)
  text = await scrape(broker)
  t.equal(series(text, 'herald_messages_in_total', 'transport="mqtt"'), 4, 'counted since the last scrape, added to it')
  t.equal(series(text, 'herald_messages_in_total', 'transport="http"'), 1)
  t.equal(series(text, 'herald_mqtt_messages_out_total'), 5)
  const overview = await api(broker, 'GET', '/v1/admin/overview', { token: admin })
  t.match(overview.body, { counters: { messagesIn: 5, messagesOut: 5 } }, 'the console overview reads the same counts')
})
