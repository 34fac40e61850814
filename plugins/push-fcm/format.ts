import { PROVIDER_PAYLOAD_LIMIT, type Delivery } from '../push-core/types.js'

/**
 * The FCM message Herald sends: the subset of firebase-admin's `TokenMessage`
 * we use. Declared here so this file stays free of the SDK; firebase-sender.ts
 * hands it to `sendEach`, which is where the compiler checks the two agree.
 */
export interface FcmMessage {
  readonly token: string
  readonly notification?: { readonly title?: string, readonly body?: string }
  readonly data: Readonly<Record<string, string>>
  readonly android: {
    readonly priority: 'high' | 'normal'
    /** Milliseconds; the SDK sends it as a protobuf Duration ("3600s"). */
    readonly ttl: number
    readonly collapseKey?: string
  }
}

/** FCM refuses a TTL above four weeks (ErrorCode INVALID_ARGUMENT, "Invalid TTL"). */
export const FCM_MAX_TTL_MS = 2_419_200 * 1000

/**
 * Delivery → FCM message. Pure: `now` only matters for the TTL that is left
 * until `delivery.expiresAt`.
 *
 * Every message carries `messageId` and `topic` in `data` so the app can drop
 * the copy it also gets over MQTT. A message whose notification + data JSON
 * exceeds {@link PROVIDER_PAYLOAD_LIMIT} becomes a wake-up data message
 * `{messageId, topic, truncated: 'true'}`: the app connects and reads the full
 * message from its MQTT session.
 */
export function formatFcm (delivery: Delivery, now: number = Date.now()): FcmMessage {
  const content = delivery.content
  const remaining = clampTtl(delivery.expiresAt - now)
  const ids = { messageId: content.messageId, topic: content.topic }

  let notification: FcmMessage['notification']
  let data: Record<string, string>
  let android: FcmMessage['android']

  if (content.kind === 'push') {
    notification = pickNotification(content.notification)
    // Herald's ids win over user keys of the same name: dedupe depends on them.
    data = { ...content.data, ...ids }
    const fcm = content.fcm ?? {}
    const ttl = fcm.ttl === undefined ? remaining : Math.min(clampTtl(fcm.ttl * 1000), remaining)
    android = {
      priority: fcm.priority ?? (notification !== undefined ? 'high' : 'normal'),
      ttl,
      ...(fcm.collapseKey !== undefined ? { collapseKey: fcm.collapseKey } : {}),
    }
  } else {
    notification = undefined
    data = content.payload !== undefined ? { ...ids, payload: content.payload } : { ...ids }
    android = { priority: 'high', ttl: remaining }
  }

  if (payloadBytes(notification, data) > PROVIDER_PAYLOAD_LIMIT) {
    return { token: delivery.token.token, data: { ...ids, truncated: 'true' }, android }
  }
  return notification !== undefined
    ? { token: delivery.token.token, notification, data, android }
    : { token: delivery.token.token, data, android }
}

/** Bytes FCM counts against its 4 KB limit, measured as the JSON of notification + data. */
export function payloadBytes (notification: FcmMessage['notification'], data: Readonly<Record<string, string>>): number {
  return Buffer.byteLength(JSON.stringify({ notification, data }), 'utf8')
}

function pickNotification (n: { readonly title?: string, readonly body?: string } | null): FcmMessage['notification'] {
  if (n === null) return undefined
  const out: { title?: string, body?: string } = {}
  if (n.title !== undefined) out.title = n.title
  if (n.body !== undefined) out.body = n.body
  // An empty notification shows nothing: treat the message as data-only.
  return out.title === undefined && out.body === undefined ? undefined : out
}

/** Whole seconds in [0, 4 weeks], in milliseconds. */
function clampTtl (ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) return 0
  return Math.min(Math.floor(ms / 1000) * 1000, FCM_MAX_TTL_MS)
}
