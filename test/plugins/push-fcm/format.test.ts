import t from 'tap'
import { FCM_MAX_TTL_MS, formatFcm, payloadBytes } from '../../../plugins/push-fcm/format.js'
import { PROVIDER_PAYLOAD_LIMIT, type Delivery, type RelayContent } from '../../../plugins/push-core/types.js'

const NOW = 1_700_000_000_000

function delivery (content: RelayContent, expiresIn = 3_600_000): Delivery {
  return {
    jobId: 'job-1',
    token: { provider: 'fcm', token: 'device-token-1', environment: 'production', apnsTopic: null },
    content,
    expiresAt: NOW + expiresIn,
  }
}

const push = (over: Partial<Extract<RelayContent, { kind: 'push' }>> = {}): RelayContent => ({
  kind: 'push',
  messageId: 'm-1',
  topic: 'users/alice/inbox',
  notification: { title: 'Hi', body: 'There' },
  data: { order: '42' },
  ...over,
})

t.test('push with a notification: notification, data with ids, high priority, ttl left until expiry', async (t) => {
  t.same(formatFcm(delivery(push()), NOW), {
    token: 'device-token-1',
    notification: { title: 'Hi', body: 'There' },
    data: { order: '42', messageId: 'm-1', topic: 'users/alice/inbox' },
    android: { priority: 'high', ttl: 3_600_000 },
  })
})

t.test('fcm options: priority, collapseKey and ttl (seconds → ms)', async (t) => {
  const m = formatFcm(delivery(push({ fcm: { priority: 'normal', collapseKey: 'orders', ttl: 60 } })), NOW)
  t.same(m.android, { priority: 'normal', ttl: 60_000, collapseKey: 'orders' })
})

t.test('fcm.ttl never outlives the delivery', async (t) => {
  const m = formatFcm(delivery(push({ fcm: { ttl: 86_400 } }), 120_000), NOW)
  t.equal(m.android.ttl, 120_000)
  t.equal(formatFcm(delivery(push({ fcm: { ttl: 0 } })), NOW).android.ttl, 0, 'ttl 0 means now or never')
})

t.test('ttl: whole seconds, never negative, at most four weeks', async (t) => {
  t.equal(formatFcm(delivery(push(), 1_500), NOW).android.ttl, 1_000)
  t.equal(formatFcm(delivery(push(), -5_000), NOW).android.ttl, 0, 'already expired')
  t.equal(formatFcm(delivery(push(), 60 * 86_400_000), NOW).android.ttl, FCM_MAX_TTL_MS)
  t.equal(formatFcm(delivery(push({ fcm: { ttl: 10 * 2_419_200 } }), 100 * 86_400_000), NOW).android.ttl, FCM_MAX_TTL_MS)
})

t.test('now defaults to the clock', async (t) => {
  const d: Delivery = { ...delivery(push()), expiresAt: Date.now() + 600_000 }
  const ttl = formatFcm(d).android.ttl
  t.ok(ttl <= 600_000 && ttl >= 590_000, `${ttl}`)
})

t.test('push without a notification is a data message, normal priority by default', async (t) => {
  t.same(formatFcm(delivery(push({ notification: null })), NOW), {
    token: 'device-token-1',
    data: { order: '42', messageId: 'm-1', topic: 'users/alice/inbox' },
    android: { priority: 'normal', ttl: 3_600_000 },
  })
  t.equal(formatFcm(delivery(push({ notification: null, fcm: { priority: 'high' } })), NOW).android.priority, 'high')
})

t.test('an empty notification shows nothing: data message', async (t) => {
  const m = formatFcm(delivery(push({ notification: {} })), NOW)
  t.notOk('notification' in m)
  t.equal(m.android.priority, 'normal')
})

t.test('notification keeps only the fields given', async (t) => {
  t.same(formatFcm(delivery(push({ notification: { body: 'only body' } })), NOW).notification, { body: 'only body' })
})

t.test("Herald's messageId and topic win over data keys of the same name", async (t) => {
  const m = formatFcm(delivery(push({ data: { messageId: 'forged', topic: 'forged', x: 'y' } })), NOW)
  t.same(m.data, { messageId: 'm-1', topic: 'users/alice/inbox', x: 'y' })
})

t.test('raw: data {topic, messageId, payload}, high priority', async (t) => {
  const raw: RelayContent = { kind: 'raw', messageId: 'm-2', topic: 'groups/ops/alerts', payload: 'disk full' }
  t.same(formatFcm(delivery(raw), NOW), {
    token: 'device-token-1',
    data: { messageId: 'm-2', topic: 'groups/ops/alerts', payload: 'disk full' },
    android: { priority: 'high', ttl: 3_600_000 },
  })
})

t.test('raw without a payload (not UTF-8) carries the ids only', async (t) => {
  const m = formatFcm(delivery({ kind: 'raw', messageId: 'm-3', topic: 't' }), NOW)
  t.same(m.data, { messageId: 'm-3', topic: 't' })
  t.notOk('payload' in m.data)
})

t.test('over the 4 KB limit: wake-up data message with the ids', async (t) => {
  const big = push({ data: { blob: 'x'.repeat(PROVIDER_PAYLOAD_LIMIT) }, fcm: { collapseKey: 'c' } })
  t.same(formatFcm(delivery(big), NOW), {
    token: 'device-token-1',
    data: { messageId: 'm-1', topic: 'users/alice/inbox', truncated: 'true' },
    android: { priority: 'high', ttl: 3_600_000, collapseKey: 'c' },
  })
  const rawBig = formatFcm(delivery({ kind: 'raw', messageId: 'm-4', topic: 't', payload: 'y'.repeat(5000) }), NOW)
  t.same(rawBig.data, { messageId: 'm-4', topic: 't', truncated: 'true' })
  t.equal(rawBig.android.priority, 'high')
})

t.test('the limit counts UTF-8 bytes of notification + data JSON, inclusive', async (t) => {
  const base = push({ data: { blob: '' } })
  const fixed = payloadBytes({ title: 'Hi', body: 'There' }, { blob: '', messageId: 'm-1', topic: 'users/alice/inbox' })
  const room = PROVIDER_PAYLOAD_LIMIT - fixed
  const exact = formatFcm(delivery({ ...base, data: { blob: 'a'.repeat(room) } } as RelayContent), NOW)
  t.equal(exact.data.blob?.length, room, 'exactly 4096 bytes still fits')
  t.equal(payloadBytes(exact.notification, exact.data), PROVIDER_PAYLOAD_LIMIT)
  const over = formatFcm(delivery({ ...base, data: { blob: 'a'.repeat(room + 1) } } as RelayContent), NOW)
  t.equal(over.data.truncated, 'true', 'one byte more is truncated')
  // 'é' is two bytes in UTF-8: half as many characters reach the limit.
  const accents = formatFcm(delivery({ ...base, data: { blob: 'é'.repeat(Math.ceil((room + 1) / 2)) } } as RelayContent), NOW)
  t.equal(accents.data.truncated, 'true')
  const accentsFit = formatFcm(delivery({ ...base, data: { blob: 'é'.repeat(Math.floor(room / 2)) } } as RelayContent), NOW)
  t.notOk('truncated' in accentsFit.data)
})

t.test('formatting is pure: the delivery is not modified', async (t) => {
  const d = delivery(push({ fcm: { ttl: 5 } }))
  const before = JSON.stringify(d)
  formatFcm(d, NOW)
  formatFcm(d, NOW)
  t.equal(JSON.stringify(d), before)
})
