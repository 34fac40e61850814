/**
 * The relay's vocabulary, shared by push-core and the provider plugins.
 * Provider plugins import types from here, the rules all senders share
 * (own-tokens.ts), and nothing else of Herald.
 */

export type PushProvider = 'fcm' | 'apns'

export type ApnsEnvironment = 'production' | 'development'

/** A device's push token as registered on its installation. */
export interface DeviceToken {
  readonly provider: PushProvider
  readonly token: string
  /**
   * The APNs environment the device registered; null when it named none, and the
   * APNs sender then uses its configured default (`push.apns.production`) at send time.
   */
  readonly environment: ApnsEnvironment | null
  /** APNs topic (bundle id) of this app, when it differs from `push.apns.topic`. */
  readonly apnsTopic: string | null
}

export interface FcmOptions {
  readonly enabled?: boolean
  readonly priority?: 'high' | 'normal'
  readonly collapseKey?: string
  readonly ttl?: number
}

export interface ApnsOptions {
  readonly enabled?: boolean
  readonly sound?: string
  readonly badge?: number
  readonly category?: string
  readonly contentAvailable?: boolean
  readonly mutableContent?: boolean
  readonly pushType?: 'alert' | 'background' | 'voip' | 'complication' | 'fileprovider' | 'mdm' | 'liveactivity'
  readonly priority?: 1 | 5 | 10
  readonly collapseId?: string
  /** UNIX seconds. */
  readonly expiration?: number
}

/**
 * What one relayed message says, whatever network carries it.
 * `push`: from `POST /v1/push` (notification, data, per-network options).
 * `raw`: any other message (MQTT or `/v1/publish`): relayed as data
 * `{topic, messageId, payload?}`, payload only when it is UTF-8 and fits.
 */
export type RelayContent =
  | {
    readonly kind: 'push'
    readonly messageId: string
    readonly topic: string
    readonly notification: { readonly title?: string, readonly body?: string } | null
    readonly data: Readonly<Record<string, string>>
    readonly fcm?: FcmOptions
    readonly apns?: ApnsOptions
  }
  | {
    readonly kind: 'raw'
    readonly messageId: string
    readonly topic: string
    /** The payload as text, absent when it is not valid UTF-8. */
    readonly payload?: string
  }

/** One notification to one device, as a provider plugin receives it. */
export interface Delivery {
  /** The relay job's id; results refer to it. */
  readonly jobId: string
  readonly token: DeviceToken
  readonly content: RelayContent
  /** When the message stops being worth delivering (ms since the epoch). */
  readonly expiresAt: number
}

/**
 * A provider's answer for one delivery, translated into what the relay does next.
 * - `sent`: accepted by the provider; the job is done.
 * - `retry`: transient (rate limit, 5xx, connection); try again later, not before `retryAfterMs` when given.
 * - `prune`: the token is dead (unregistered, invalid, wrong sender/topic): remove it from the installation.
 * - `drop`: this message can never be delivered (e.g. rejected payload); give up on it, keep the token.
 */
export type DeliveryResult =
  | { readonly jobId: string, readonly outcome: 'sent' }
  | { readonly jobId: string, readonly outcome: 'retry', readonly reason: string, readonly retryAfterMs?: number }
  | { readonly jobId: string, readonly outcome: 'prune', readonly reason: string }
  | { readonly jobId: string, readonly outcome: 'drop', readonly reason: string }

/** One per provider. A sender never throws for a delivery's failure: it reports it in the result. */
export interface PushSender {
  readonly provider: PushProvider
  /** Largest number of deliveries `send` takes at once (FCM `sendEach`: 500). */
  readonly maxBatch: number
  send (deliveries: readonly Delivery[]): Promise<DeliveryResult[]>
  close (): Promise<void>
}

/** Providers' payload limit: FCM message data+notification, APNs JSON payload. */
export const PROVIDER_PAYLOAD_LIMIT = 4096
