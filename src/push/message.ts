import Type, { type Static } from 'typebox'
import { PROVIDER_PAYLOAD_LIMIT } from '../../plugins/push-core/index.js'
import { TopicLevelId } from '../auth/index.js'

/**
 * The push request of `POST /v1/push`: a target, what to show, app data, and
 * per-network options. One schema gives the route's validation, its OpenAPI
 * document and the TypeScript type.
 */

export const PushTarget = Type.Union([
  // no minLength: an empty topic is TOPIC_INVALID (assertPublishTopic), not a schema error
  Type.Object({ topic: Type.String({ maxLength: 65535 }) }, { additionalProperties: false }),
  Type.Object({ user: TopicLevelId }, { additionalProperties: false, description: 'direct push to every device of a user (service/admin)' }),
  Type.Object({ installation: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false }),
])

export const Notification = Type.Object({
  title: Type.Optional(Type.String({ maxLength: 1024 })),
  body: Type.Optional(Type.String({ maxLength: 4096 })),
}, { additionalProperties: false })

/** Flat string map, as FCM data messages require. */
export const PushData = Type.Record(Type.String({ minLength: 1, maxLength: 256 }), Type.String(), { maxProperties: 100 })

export const FcmOptions = Type.Object({
  enabled: Type.Optional(Type.Boolean({ default: true })),
  priority: Type.Optional(Type.Union([Type.Literal('high'), Type.Literal('normal')])),
  collapseKey: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  ttl: Type.Optional(Type.Integer({ minimum: 0, maximum: 2419200, description: 'seconds; overrides the message ttl' })),
}, { additionalProperties: false })

export const ApnsOptions = Type.Object({
  enabled: Type.Optional(Type.Boolean({ default: true })),
  sound: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  badge: Type.Optional(Type.Integer({ minimum: 0 })),
  category: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  contentAvailable: Type.Optional(Type.Boolean()),
  mutableContent: Type.Optional(Type.Boolean()),
  pushType: Type.Optional(Type.Union([
    Type.Literal('alert'), Type.Literal('background'), Type.Literal('voip'), Type.Literal('complication'),
    Type.Literal('fileprovider'), Type.Literal('mdm'), Type.Literal('liveactivity'),
  ])),
  priority: Type.Optional(Type.Union([Type.Literal(5), Type.Literal(10), Type.Literal(1)])),
  collapseId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  expiration: Type.Optional(Type.Integer({ minimum: 0, description: 'UNIX seconds; 0 = deliver once or never' })),
}, { additionalProperties: false })

export const MqttOptions = Type.Object({
  enabled: Type.Optional(Type.Boolean({ default: true })),
  qos: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(1)], { default: 1 })),
}, { additionalProperties: false })

export const PushRequest = Type.Object({
  to: PushTarget,
  notification: Type.Optional(Notification),
  data: Type.Optional(PushData),
  fcm: Type.Optional(FcmOptions),
  apns: Type.Optional(ApnsOptions),
  mqtt: Type.Optional(MqttOptions),
  ttl: Type.Optional(Type.Integer({ minimum: 0, maximum: 2419200, description: 'seconds the message stays worth delivering' })),
}, { additionalProperties: false })

export type PushRequest = Static<typeof PushRequest>
export type PushTarget = Static<typeof PushTarget>

/** What a device receives over MQTT for a push: README "Push envelope". */
export interface PushEnvelope {
  readonly id: string
  readonly sentAt: string
  readonly sender: string | null
  /** The MQTT topic it was delivered on. */
  readonly topic: string
  /** The target as the sender gave it. */
  readonly origin: PushTarget
  readonly notification: { title?: string, body?: string } | null
  readonly data: Record<string, string>
  /** When the sender's ttl runs out; absent without ttl. */
  readonly expiresAt?: string
}

// FCM refuses these data keys (firebase "Build send requests": reserved words)
const reservedDataKey = /^(from|notification|message_type|collapse_key)$|^(google|gcm)/i

/** Product rules JSON schema cannot say; returns the problem or null. */
export function checkPushContent (request: PushRequest): { code: 'INVALID_REQUEST' | 'PAYLOAD_TOO_LARGE', message: string } | null {
  const hasNotification = request.notification !== undefined && (request.notification.title !== undefined || request.notification.body !== undefined)
  const data = request.data ?? {}
  if (!hasNotification && Object.keys(data).length === 0) {
    return { code: 'INVALID_REQUEST', message: 'a push needs a notification or data' }
  }
  const reserved = Object.keys(data).find((key) => reservedDataKey.test(key))
  if (reserved !== undefined) return { code: 'INVALID_REQUEST', message: `body/data: ${reserved} is a reserved key` }
  const size = Buffer.byteLength(JSON.stringify({ notification: request.notification ?? null, data }))
  if (size > PROVIDER_PAYLOAD_LIMIT) {
    return { code: 'PAYLOAD_TOO_LARGE', message: `notification and data take ${size} bytes; the limit is ${PROVIDER_PAYLOAD_LIMIT}` }
  }
  return null
}

export function buildEnvelope (fields: { id: string, now: Date, sender: string | null, topic: string, request: PushRequest }): PushEnvelope {
  const { request } = fields
  const envelope: PushEnvelope = {
    id: fields.id,
    sentAt: fields.now.toISOString(),
    sender: fields.sender,
    topic: fields.topic,
    origin: request.to,
    notification: request.notification ?? null,
    data: request.data ?? {},
    ...(request.ttl !== undefined && { expiresAt: new Date(fields.now.getTime() + request.ttl * 1000).toISOString() }),
  }
  return envelope
}
