/**
 * The APNs PushSender: format each delivery, send it through node-apn, and translate
 * APNs' answer into Herald's sent / retry / prune / drop.
 * Reason codes: Apple's "Handling notification responses from APNs".
 */
import { createPrivateKey } from 'node:crypto'
import { readConfiguredFile } from '../push-core/config-file.js'
import { ownTokensOnly } from '../push-core/own-tokens.js'
import { scrubDeviceToken } from '../push-core/scrub-token.js'
import type { ApnsEnvironment, Delivery, DeliveryResult, PushSender } from '../push-core/types.js'
import { formatApns } from './format.js'
import { createNodeApnTransport, type ApnsResponse, type ApnsTransport } from './node-apn-sender.js'

/** Herald's `push.apns` config. */
export interface ApnsSenderConfig {
  /** Path of the .p8 auth key. */
  readonly keyFile: string
  readonly keyId: string
  readonly teamId: string
  /** Default apns-topic (bundle id) for tokens without their own. */
  readonly topic: string
  /** Environment of tokens registered without one, applied at send time (`push.apns.production`). */
  readonly production: boolean
  /** Replaces both APNs hosts (tests, proxies). */
  readonly host: string | null
  readonly port: number | null
  readonly caFile: string | null
}

/** The subset of a pino logger this plugin uses. */
export interface ApnsLogger {
  warn (obj: object, msg: string): void
  debug (obj: object, msg: string): void
}

/** A dead token: remove it from the installation. */
const PRUNE = new Set(['Unregistered', 'ExpiredToken', 'BadDeviceToken', 'DeviceTokenNotForTopic'])
/** Transient, whatever the status says. */
const RETRY = new Set(['TooManyRequests', 'TooManyProviderTokenUpdates', 'ExpiredProviderToken', 'IdleTimeout', 'InternalServerError', 'ServiceUnavailable', 'Shutdown'])

export type ApnsVerdict =
  | { readonly outcome: 'sent' }
  | { readonly outcome: 'retry' | 'prune' | 'drop', readonly reason: string }

/** APNs' answer → what the relay does next. */
export function classifyApnsResponse (response: ApnsResponse): ApnsVerdict {
  if (response.ok) return { outcome: 'sent' }
  const { status, reason } = response
  if (status === null) return { outcome: 'retry', reason: `APNs transport error: ${reason}` }
  const described = `APNs ${status} ${reason}`
  if (status === 410 || PRUNE.has(reason)) return { outcome: 'prune', reason: described }
  if (RETRY.has(reason) || status === 408 || status === 429 || status >= 500) return { outcome: 'retry', reason: described }
  // PayloadTooLarge, BadTopic, TopicDisallowed, BadExpirationDate, InvalidProviderToken, …:
  // sending this message again cannot succeed
  return { outcome: 'drop', reason: described }
}

export function createApnsSender (config: ApnsSenderConfig, logger?: ApnsLogger): PushSender {
  const key = readKey(config.keyFile)
  const ca = config.caFile === null ? null : readConfiguredFile(config.caFile, 'push.apns.caFile')
  const transport: ApnsTransport = createNodeApnTransport({
    key,
    keyId: config.keyId,
    teamId: config.teamId,
    host: config.host,
    port: config.port,
    ca,
  })
  const fallbackEnvironment: ApnsEnvironment = config.production ? 'production' : 'development'

  const sendOne = async (delivery: Delivery): Promise<DeliveryResult> => {
    const { jobId, token } = delivery
    let response: ApnsResponse
    try {
      const request = formatApns(delivery, config.topic)
      response = await transport.send(request, token.token, token.environment ?? fallbackEnvironment)
    } catch (err) {
      response = { ok: false, status: null, reason: err instanceof Error ? err.message : 'send failed' }
    }
    const verdict = classifyApnsResponse(response)
    if (verdict.outcome === 'sent') return { jobId, outcome: 'sent' }
    // node-apn messages can quote the request path, which holds the device token
    const reason = scrubDeviceToken(verdict.reason, token.token)
    if (verdict.outcome !== 'prune') logger?.[verdict.outcome === 'drop' ? 'warn' : 'debug']({ jobId, outcome: verdict.outcome, reason }, 'APNs did not accept a notification')
    return { jobId, outcome: verdict.outcome, reason }
  }

  return ownTokensOnly({
    provider: 'apns',
    // every delivery is its own HTTP/2 stream; the relay worker runs batches side by side,
    // so one-delivery batches let each result be handled as soon as it arrives
    maxBatch: 1,
    async send (deliveries) {
      return await Promise.all(deliveries.map(sendOne))
    },
    async close () {
      await transport.close()
    },
  })
}

function readKey (file: string): Buffer {
  const pem = readConfiguredFile(file, 'push.apns.keyFile')
  try {
    const key = createPrivateKey(pem)
    if (key.asymmetricKeyType !== 'ec') throw new Error('not an EC key')
  } catch (err) {
    // the library message never quotes the key; still keep it out of ours
    throw new Error('push.apns.keyFile: not a PEM-encoded P-256 private key (.p8)', { cause: err })
  }
  return pem
}
