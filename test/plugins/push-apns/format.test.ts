import t from 'tap'
import { formatApns } from '../../../plugins/push-apns/format.js'
import { PROVIDER_PAYLOAD_LIMIT, type ApnsOptions, type Delivery, type DeviceToken, type RelayContent } from '../../../plugins/push-core/types.js'

const TOKEN: DeviceToken = { provider: 'apns', token: 'ab'.repeat(32), environment: 'production', apnsTopic: null }
const EXPIRES_AT = 1_900_000_000_500 // ms

function push (overrides: Partial<Extract<RelayContent, { kind: 'push' }>> = {}): RelayContent {
  return {
    kind: 'push',
    messageId: 'm-1',
    topic: 'users/alice/inbox',
    notification: { title: 'Hello', body: 'World' },
    data: {},
    ...overrides,
  }
}

function delivery (content: RelayContent, token: Partial<DeviceToken> = {}): Delivery {
  return { jobId: 'job-1', token: { ...TOKEN, ...token }, content, expiresAt: EXPIRES_AT }
}

const withApns = (apns: ApnsOptions, rest: Partial<Extract<RelayContent, { kind: 'push' }>> = {}): RelayContent => push({ ...rest, apns })
const bytes = (payload: object): number => Buffer.byteLength(JSON.stringify(payload), 'utf8')

t.test('a notification becomes an alert push with priority 10', async (t) => {
  const request = formatApns(delivery(push({ data: { orderId: '42' } })), 'com.example.app')
  t.strictSame(request, {
    topic: 'com.example.app',
    pushType: 'alert',
    priority: 10,
    expiry: 1_900_000_000,
    payload: {
      aps: { alert: { title: 'Hello', body: 'World' } },
      orderId: '42',
      messageId: 'm-1',
      topic: 'users/alice/inbox',
    },
  })
  t.notOk('collapseId' in request, 'no collapse id unless asked for')
})

t.test('alert carries only the parts the notification has', async (t) => {
  t.strictSame(formatApns(delivery(push({ notification: { title: 'Only title' } })), 'b').payload.aps, { alert: { title: 'Only title' } })
  t.strictSame(formatApns(delivery(push({ notification: { body: 'Only body' } })), 'b').payload.aps, { alert: { body: 'Only body' } })
  t.strictSame(formatApns(delivery(push({ notification: {} })), 'b').payload.aps, { 'content-available': 1 }, 'empty notification: no alert')
})

t.test('apns options map to aps keys and headers', async (t) => {
  const request = formatApns(delivery(withApns({
    sound: 'ping.caf',
    badge: 3,
    category: 'REPLY',
    contentAvailable: true,
    mutableContent: true,
    collapseId: 'score-7',
    expiration: 1_800_000_000,
    priority: 5,
  })), 'com.example.app')
  t.strictSame(request.payload.aps, {
    alert: { title: 'Hello', body: 'World' },
    badge: 3,
    sound: 'ping.caf',
    category: 'REPLY',
    'content-available': 1,
    'mutable-content': 1,
  })
  t.equal(request.pushType, 'alert')
  t.equal(request.priority, 5)
  t.equal(request.collapseId, 'score-7')
  t.equal(request.expiry, 1_800_000_000, 'content.apns.expiration wins over expiresAt')
})

t.test('badge 0 is kept (it clears the badge)', async (t) => {
  const request = formatApns(delivery(withApns({ badge: 0 }, { notification: null })), 'b')
  t.strictSame(request.payload.aps, { badge: 0 })
  t.equal(request.pushType, 'alert', 'a badge is user-visible')
  t.equal(request.priority, 10)
})

t.test('sound without alert is an alert push', async (t) => {
  const request = formatApns(delivery(withApns({ sound: 'default' }, { notification: null })), 'b')
  t.equal(request.pushType, 'alert')
  t.strictSame(request.payload.aps, { sound: 'default' })
})

t.test('contentAvailable false and mutableContent false add nothing', async (t) => {
  const request = formatApns(delivery(withApns({ contentAvailable: false, mutableContent: false })), 'b')
  t.strictSame(request.payload.aps, { alert: { title: 'Hello', body: 'World' } })
})

t.test('data only: background push, content-available, priority 5', async (t) => {
  const request = formatApns(delivery(push({ notification: null, data: { k: 'v' } })), 'com.example.app')
  t.strictSame(request, {
    topic: 'com.example.app',
    pushType: 'background',
    priority: 5,
    expiry: 1_900_000_000,
    payload: { aps: { 'content-available': 1 }, k: 'v', messageId: 'm-1', topic: 'users/alice/inbox' },
  })
})

t.test('explicit background push gets content-available and never priority 10', async (t) => {
  const request = formatApns(delivery(withApns({ pushType: 'background', priority: 10 })), 'b')
  t.equal(request.pushType, 'background')
  t.equal(request.priority, 5)
  t.equal((request.payload.aps as Record<string, unknown>)['content-available'], 1)
  t.equal(formatApns(delivery(withApns({ pushType: 'background', priority: 1 })), 'b').priority, 1, 'priority 1 is allowed')
})

t.test('explicit alert push type without an alert keeps it', async (t) => {
  const request = formatApns(delivery(withApns({ pushType: 'alert' }, { notification: null })), 'b')
  t.equal(request.pushType, 'alert')
  t.equal(request.priority, 10)
})

t.test('topic: installation apnsTopic wins over the default', async (t) => {
  t.equal(formatApns(delivery(push(), { apnsTopic: 'com.other.app' }), 'com.example.app').topic, 'com.other.app')
  t.equal(formatApns(delivery(push()), 'com.example.app').topic, 'com.example.app')
})

t.test('voip and other PushKit types get their topic suffix', async (t) => {
  const voip = formatApns(delivery(withApns({ pushType: 'voip' })), 'com.example.app')
  t.equal(voip.topic, 'com.example.app.voip')
  t.equal(voip.pushType, 'voip')
  t.equal(voip.priority, 10)
  t.equal(formatApns(delivery(withApns({ pushType: 'voip' }), { apnsTopic: 'com.other.app' }), 'x').topic, 'com.other.app.voip')
  t.equal(formatApns(delivery(withApns({ pushType: 'voip' }), { apnsTopic: 'com.other.app.voip' }), 'x').topic, 'com.other.app.voip', 'not doubled')
  t.equal(formatApns(delivery(withApns({ pushType: 'complication' })), 'a').topic, 'a.complication')
  t.equal(formatApns(delivery(withApns({ pushType: 'fileprovider' })), 'a').topic, 'a.pushkit.fileprovider')
  t.equal(formatApns(delivery(withApns({ pushType: 'liveactivity' })), 'a').topic, 'a.push-type.liveactivity')
  t.equal(formatApns(delivery(withApns({ pushType: 'mdm' })), 'a').topic, 'a')
})

t.test('Herald keys win over data keys of the same name; aps cannot be spoofed', async (t) => {
  const request = formatApns(delivery(push({ data: { aps: 'evil', messageId: 'forged', topic: 'forged', other: 'ok' } })), 'b')
  t.strictSame(request.payload, {
    aps: { alert: { title: 'Hello', body: 'World' } },
    messageId: 'm-1',
    topic: 'users/alice/inbox',
    other: 'ok',
  })
})

t.test('expiry comes from expiresAt in whole seconds', async (t) => {
  const d: Delivery = { ...delivery(push()), expiresAt: 1_700_000_000_999 }
  t.equal(formatApns(d, 'b').expiry, 1_700_000_000)
  t.equal(formatApns({ ...d, expiresAt: Number.NaN }, 'b').expiry, 0, 'unusable time: deliver once')
  t.equal(formatApns(delivery(withApns({ expiration: 0 })), 'b').expiry, 0, 'explicit 0 is kept')
})

t.test('raw content: background push with topic, messageId and payload', async (t) => {
  const request = formatApns(delivery({ kind: 'raw', messageId: 'b-7', topic: 'app/news', payload: '{"x":1}' }), 'com.example.app')
  t.strictSame(request, {
    topic: 'com.example.app',
    pushType: 'background',
    priority: 5,
    expiry: 1_900_000_000,
    payload: { aps: { 'content-available': 1 }, topic: 'app/news', messageId: 'b-7', payload: '{"x":1}' },
  })
})

t.test('raw content without a text payload leaves payload out', async (t) => {
  const request = formatApns(delivery({ kind: 'raw', messageId: 'b-8', topic: 'app/bin' }), 'b')
  t.strictSame(request.payload, { aps: { 'content-available': 1 }, topic: 'app/bin', messageId: 'b-8' })
  t.notOk('payload' in request.payload)
})

t.test('raw content uses the installation topic too', async (t) => {
  t.equal(formatApns(delivery({ kind: 'raw', messageId: 'b', topic: 't' }, { apnsTopic: 'com.other.app' }), 'x').topic, 'com.other.app')
})

const WAKE_UP = { aps: { 'content-available': 1 }, messageId: 'm-1', topic: 'users/alice/inbox', truncated: true }

t.test('oversized push becomes a wake-up', async (t) => {
  const request = formatApns(delivery(withApns({ collapseId: 'c', sound: 'default', pushType: 'voip', priority: 10 }, { data: { big: 'x'.repeat(5000) } })), 'com.example.app')
  t.strictSame(request, { topic: 'com.example.app', pushType: 'background', priority: 5, expiry: 1_900_000_000, payload: WAKE_UP })
  t.notOk('collapseId' in request)
})

t.test('oversized notification text becomes a wake-up', async (t) => {
  const request = formatApns(delivery(push({ notification: { title: 't', body: 'é'.repeat(2100) } })), 'b')
  t.strictSame(request.payload, WAKE_UP, 'the limit counts UTF-8 bytes, not characters')
})

t.test('oversized raw payload becomes a wake-up', async (t) => {
  const request = formatApns(delivery({ kind: 'raw', messageId: 'm-1', topic: 'users/alice/inbox', payload: 'y'.repeat(4096) }), 'b')
  t.strictSame(request.payload, WAKE_UP)
  t.equal(request.pushType, 'background')
})

t.test('the limit is inclusive: exactly 4096 bytes is sent as is', async (t) => {
  const base = push({ notification: null, data: { pad: '' } })
  const emptySize = bytes(formatApns(delivery(base), 'b').payload)
  const fits = push({ notification: null, data: { pad: 'p'.repeat(PROVIDER_PAYLOAD_LIMIT - emptySize) } })
  const atLimit = formatApns(delivery(fits), 'b')
  t.equal(bytes(atLimit.payload), PROVIDER_PAYLOAD_LIMIT)
  t.notOk('truncated' in atLimit.payload)
  const over = push({ notification: null, data: { pad: 'p'.repeat(PROVIDER_PAYLOAD_LIMIT - emptySize + 1) } })
  t.strictSame(formatApns(delivery(over), 'b').payload, WAKE_UP)
})

t.test('the wake-up keeps the installation topic but never a PushKit suffix', async (t) => {
  const request = formatApns(delivery(withApns({ pushType: 'voip' }, { data: { big: 'x'.repeat(5000) } }), { apnsTopic: 'com.other.app' }), 'x')
  t.equal(request.topic, 'com.other.app')
})

t.test('formatApns does not mutate its input', async (t) => {
  const content = push({ data: { a: '1' } })
  const d = delivery(content)
  const before = JSON.stringify(d)
  formatApns(d, 'b')
  t.equal(JSON.stringify(d), before)
})
