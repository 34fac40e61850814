/**
 * The one file that imports @parse/node-apn. It sends a formatted ApnsRequest to one
 * device and answers with an SDK-free ApnsResponse; sender.ts decides what it means.
 *
 * node-apn 8.1.0 behaviour this file relies on or works around (lib/client.js):
 * - One Provider holds one HTTP/2 session; every `send` is a stream on it, so many
 *   requests are in flight at once. The session is opened on first use, reopened after
 *   it closes (GOAWAY, socket error), and closed by node-apn after a 500.
 * - Its internal retry (408/429/5xx and 403 ExpiredProviderToken, up to
 *   `connectionRetryLimit` times) is meant to honour Retry-After, but it reads
 *   `headers['Retry-After']` while HTTP/2 header names are lower-case, so it always
 *   retries at once; it also deletes `retryAfter` before reporting. We turn that
 *   retry off (`connectionRetryLimit: 0`) and let Herald's outbox back off with
 *   jitter. Retry-After is therefore not available to Herald.
 * - When a 500 closes the session, other retryable answers still in flight on it
 *   (429, 503, 403 ExpiredProviderToken) come back as "client session is either closed
 *   or destroyed" without their status: still a retry, with a vaguer reason.
 * - ExpiredProviderToken makes node-apn sign a fresh JWT before reporting, so the
 *   next attempt goes out with a new token.
 */
import { Notification, Provider, type ProviderOptions, type ResponseFailure } from '@parse/node-apn'
import type { ApnsEnvironment } from '../push-core/types.js'
import type { ApnsRequest } from './format.js'

/**
 * RST_STREAM REFUSED_STREAM means the server did not process the request
 * (RFC 9113 §8.7), so it is resent at once. APNs refuses streams over its
 * SETTINGS_MAX_CONCURRENT_STREAMS, which is 1 on a new connection until a request
 * with a valid provider token arrives; Node's client only learns the limit from
 * the server's SETTINGS, so the first burst on a new connection is partly refused.
 * The resent requests wait in Node's queue for the raised limit.
 */
const REFUSED_STREAM_ATTEMPTS = 3

export interface NodeApnOptions {
  /** PEM of the .p8 auth key. */
  readonly key: Buffer
  readonly keyId: string
  readonly teamId: string
  /** Replaces api.push.apple.com / api.sandbox.push.apple.com for both environments. */
  readonly host: string | null
  readonly port: number | null
  /** PEM of a CA to trust for `host`. */
  readonly ca: Buffer | null
  /** Per-request timeout, ms (node-apn default 5000). */
  readonly requestTimeoutMs?: number
}

/** APNs' answer to one request. `status` is null when no HTTP response came back. */
export type ApnsResponse =
  | { readonly ok: true, readonly apnsId: string | null }
  | { readonly ok: false, readonly status: number | null, readonly reason: string }

export interface ApnsTransport {
  send (request: ApnsRequest, deviceToken: string, environment: ApnsEnvironment): Promise<ApnsResponse>
  close (): Promise<void>
}

export function createNodeApnTransport (options: NodeApnOptions): ApnsTransport {
  const providers = new Map<ApnsEnvironment, Provider>()
  let closed = false

  const providerFor = (environment: ApnsEnvironment): Provider => {
    let provider = providers.get(environment)
    if (provider === undefined) {
      const providerOptions: ProviderOptions = {
        token: { key: options.key, keyId: options.keyId, teamId: options.teamId },
        production: environment === 'production',
        connectionRetryLimit: 0,
        ...(options.requestTimeoutMs !== undefined && { requestTimeout: options.requestTimeoutMs }),
        ...(options.host !== null && { address: options.host }),
        ...(options.port !== null && { port: options.port }),
        ...(options.ca !== null && { ca: [options.ca] }),
      }
      provider = new Provider(providerOptions)
      providers.set(environment, provider)
    }
    return provider
  }

  return {
    async send (request, deviceToken, environment) {
      if (closed) return { ok: false, status: null, reason: 'sender closed' }
      const notification = new Notification()
      notification.topic = request.topic
      notification.pushType = request.pushType
      notification.priority = request.priority
      notification.expiry = request.expiry
      if (request.collapseId !== undefined) notification.collapseId = request.collapseId
      // sent verbatim: format.ts owns the body
      notification.rawPayload = request.payload
      for (let attempt = 1; ; attempt++) {
        const { sent, failed } = await providerFor(environment).send(notification, deviceToken)
        const success = sent[0]
        if (success !== undefined) {
          const apnsId = (success as { 'apns-id'?: unknown })['apns-id']
          return { ok: true, apnsId: typeof apnsId === 'string' ? apnsId : null }
        }
        if (!closed && attempt < REFUSED_STREAM_ATTEMPTS && refused(failed[0])) continue
        return failure(failed[0])
      }
    },
    async close () {
      closed = true
      const all = [...providers.values()]
      providers.clear()
      await Promise.all(all.map(shutdown))
    },
  }
}

async function shutdown (provider: Provider): Promise<void> {
  // node-apn 8.1.0 Client.closeAndDestroySession awaits `session.close(cb)` whenever
  // `!session.closed`, but Node never calls back close() on a session that was destroyed
  // while still connecting (connection refused, TLS failure: `closed` stays false), so
  // Provider.shutdown would never finish. Such a session holds nothing: let node-apn forget it.
  const client = (provider as unknown as { client?: Record<string, unknown> }).client
  for (const key of ['session', 'manageChannelsSession']) {
    const session = client?.[key] as { destroyed?: unknown } | null | undefined
    if (client !== undefined && session?.destroyed === true) client[key] = null
  }
  // Provider.shutdown returns nothing (the typings say Promise); its callback fires once sessions are closed
  await new Promise<void>((resolve) => { void provider.shutdown(resolve) })
}

function refused (failed: ResponseFailure | undefined): boolean {
  // node-apn wraps the stream error in a VError whose message keeps Node's text
  return failed?.status === undefined && failed?.error instanceof Error && failed.error.message.includes('NGHTTP2_REFUSED_STREAM')
}

function failure (failed: ResponseFailure | undefined): ApnsResponse {
  if (failed === undefined) return { ok: false, status: null, reason: 'no response from node-apn' }
  const status = typeof failed.status === 'number' ? failed.status : null
  const apnsReason = failed.response?.reason
  if (typeof apnsReason === 'string') return { ok: false, status, reason: apnsReason }
  // node-apn drops the body of a 500 InternalServerError and of a 403 ExpiredProviderToken,
  // reporting its own VError instead (for the 403 its message is the reason)
  if (status === 500) return { ok: false, status, reason: 'InternalServerError' }
  const message = failed.error instanceof Error ? failed.error.message : undefined
  return { ok: false, status, reason: message ?? (status === null ? 'no response' : 'no reason given') }
}
