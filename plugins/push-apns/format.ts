/**
 * Delivery → APNs request (headers and JSON body). Pure: no SDK, no clock, no I/O.
 * Header semantics from Apple's "Sending notification requests to APNs".
 */
import { PROVIDER_PAYLOAD_LIMIT, type ApnsOptions, type Delivery } from '../push-core/types.js'

export type ApnsPushType = NonNullable<ApnsOptions['pushType']>
export type ApnsPriority = 1 | 5 | 10

/** What one APNs request carries: the `apns-*` headers and the JSON body. */
export interface ApnsRequest {
  /** `apns-topic`: bundle id, plus the suffix some push types require. */
  readonly topic: string
  /** `apns-push-type`. */
  readonly pushType: ApnsPushType
  /** `apns-priority`. */
  readonly priority: ApnsPriority
  /** `apns-expiration`, UNIX seconds (0: deliver once, do not store). */
  readonly expiry: number
  /** `apns-collapse-id`. */
  readonly collapseId?: string
  /** The JSON body. */
  readonly payload: Record<string, unknown>
}

/**
 * Apple requires these topic suffixes for push types delivered to app extensions
 * or PushKit ("apns-topic" in "Sending notification requests to APNs").
 */
const TOPIC_SUFFIX: Partial<Record<ApnsPushType, string>> = {
  voip: '.voip',
  complication: '.complication',
  fileprovider: '.pushkit.fileprovider',
  liveactivity: '.push-type.liveactivity',
}

export function formatApns (delivery: Delivery, defaultTopic: string): ApnsRequest {
  const baseTopic = delivery.token.apnsTopic ?? defaultTopic
  const { content } = delivery
  const expiry = toUnixSeconds(content.kind === 'push' ? content.apns?.expiration : undefined, delivery.expiresAt)

  let request: ApnsRequest
  if (content.kind === 'raw') {
    const payload: Record<string, unknown> = {
      aps: { 'content-available': 1 },
      topic: content.topic,
      messageId: content.messageId,
    }
    if (content.payload !== undefined) payload.payload = content.payload
    request = { topic: baseTopic, pushType: 'background', priority: 5, expiry, payload }
  } else {
    const options: ApnsOptions = content.apns ?? {}
    const aps: Record<string, unknown> = {}
    const alert: Record<string, string> = {}
    if (content.notification?.title !== undefined) alert.title = content.notification.title
    if (content.notification?.body !== undefined) alert.body = content.notification.body
    const hasAlert = Object.keys(alert).length > 0
    if (hasAlert) aps.alert = alert
    if (options.badge !== undefined) aps.badge = options.badge
    if (options.sound !== undefined) aps.sound = options.sound
    if (options.category !== undefined) aps.category = options.category
    if (options.mutableContent === true) aps['mutable-content'] = 1

    // Apple: the alert type is for anything the user notices (alert, sound or badge);
    // background is for content-available-only pushes.
    const userVisible = hasAlert || options.sound !== undefined || options.badge !== undefined
    const pushType: ApnsPushType = options.pushType ?? (userVisible ? 'alert' : 'background')
    let priority: ApnsPriority = options.priority ?? (pushType === 'background' ? 5 : 10)
    if (pushType === 'background') {
      // A background push must carry content-available and must not use priority 10.
      aps['content-available'] = 1
      if (priority === 10) priority = 5
    } else if (options.contentAvailable === true) {
      aps['content-available'] = 1
    }

    // Data keys sit next to `aps`; Herald's own keys win over data keys of the same name.
    const payload: Record<string, unknown> = { ...content.data, aps, messageId: content.messageId, topic: content.topic }
    const suffix = TOPIC_SUFFIX[pushType]
    const topic = suffix !== undefined && !baseTopic.endsWith(suffix) ? baseTopic + suffix : baseTopic
    request = {
      topic,
      pushType,
      priority,
      expiry,
      ...(options.collapseId !== undefined && { collapseId: options.collapseId }),
      payload,
    }
  }

  if (Buffer.byteLength(JSON.stringify(request.payload), 'utf8') <= PROVIDER_PAYLOAD_LIMIT) return request
  return wakeUp(delivery, baseTopic, expiry)
}

/** Too big for APNs: a silent push that tells the app to fetch the message over MQTT. */
function wakeUp (delivery: Delivery, topic: string, expiry: number): ApnsRequest {
  return {
    topic,
    pushType: 'background',
    priority: 5,
    expiry,
    payload: {
      aps: { 'content-available': 1 },
      messageId: delivery.content.messageId,
      topic: delivery.content.topic,
      truncated: true,
    },
  }
}

function toUnixSeconds (expiration: number | undefined, expiresAtMs: number): number {
  const seconds = expiration ?? Math.floor(expiresAtMs / 1000)
  return Number.isFinite(seconds) ? Math.max(0, Math.floor(seconds)) : 0
}
