/**
 * The one file that imports firebase-admin: an app per sender, `sendEach`,
 * and the translation of the SDK's errors into Herald's retry/prune/drop.
 */
import type { Agent } from 'node:http'
import { basename, dirname, resolve, sep } from 'node:path'
import { cert, deleteApp, initializeApp, type App } from 'firebase-admin/app'
import { getMessaging, type BatchResponse, type Message, type Messaging } from 'firebase-admin/messaging'
import { scrubDeviceToken } from '../push-core/scrub-token.js'
import type { FcmMessage } from './format.js'

export interface FirebaseClientOptions {
  /**
   * Path of the service account JSON. A path, not the parsed object: with an
   * object, firebase-admin 13.9 builds the google-auth-library client without
   * its options and the token request ignores the agent
   * (firebase/firebase-admin-node#2960).
   */
  readonly serviceAccountFile: string
  /** The project messages are sent to (`push.fcm.projectId`, else the service account's). */
  readonly projectId: string
  /**
   * When set, every call (FCM and the OAuth token endpoint) goes through this
   * agent, over HTTP/1.1: the SDK's default HTTP/2 transport opens its own
   * session to fcm.googleapis.com and takes no agent.
   */
  readonly agent?: Agent
}

/** What happened to one message, in Herald's terms (the caller adds the job id). */
export type FcmOutcome =
  | { readonly outcome: 'sent' }
  | { readonly outcome: 'retry', readonly reason: string, readonly retryAfterMs?: number }
  | { readonly outcome: 'prune', readonly reason: string }
  | { readonly outcome: 'drop', readonly reason: string }

export interface FirebaseClient {
  /** Transport used by `sendEach`: `http2` (SDK default) or `http1` (legacy, through the agent). */
  readonly transport: 'http1' | 'http2'
  /**
   * One outcome per message, in order. Rejects only when the batch as a whole
   * could not be attempted; the caller then retries every message.
   */
  sendEach (messages: readonly FcmMessage[]): Promise<FcmOutcome[]>
  close (): Promise<void>
}

/** FCM ErrorCode docs: QUOTA_EXCEEDED "use exponential backoff with a minimum initial delay of 1 minute". */
export const RATE_LIMIT_RETRY_AFTER_MS = 60_000

let appSeq = 0

export function openFirebaseClient (options: FirebaseClientOptions): FirebaseClient {
  const { serviceAccountFile, projectId, agent } = options
  // A named app per sender: several senders (and tests) can live in one process.
  const name = `herald-fcm-${process.pid}-${++appSeq}`
  const app: App = initializeApp({
    credential: cert(agent !== undefined ? distinctPath(serviceAccountFile, appSeq) : serviceAccountFile, agent),
    projectId,
    ...(agent !== undefined ? { httpAgent: agent } : {}),
  }, name)
  const messaging: Messaging = getMessaging(app)
  // The HTTP/1.1 path is the only one that uses `httpAgent` (the HTTP/2 one
  // dials https://fcm.googleapis.com itself). Deprecated in 13.x but present.
  if (agent !== undefined) messaging.enableLegacyHttpTransport()
  let closed: Promise<void> | undefined

  return {
    transport: agent !== undefined ? 'http1' : 'http2',

    async sendEach (messages) {
      if (messages.length === 0) return []
      // Our FcmMessage is checked against the SDK's Message type here.
      const batch: Message[] = messages.map((m) => m)
      let response: BatchResponse
      try {
        response = await messaging.sendEach(batch)
      } catch (err) {
        // HTTP/2 session failures (FirebaseMessagingSessionError) carry the
        // outcome of the requests already made: report those rather than
        // retrying messages FCM may have accepted.
        const pending = (err as { pendingBatchResponse?: Promise<BatchResponse> } | null)?.pendingBatchResponse
        if (pending === undefined) throw err
        response = await pending
      }
      return messages.map((m, i) => {
        const r = response.responses[i]
        if (r === undefined) return { outcome: 'retry', reason: 'fcm: no response for this message' }
        return r.success ? { outcome: 'sent' } : translateFcmError(r.error, m.token)
      })
    },

    async close () {
      closed ??= deleteApp(app)
      await closed
    },
  }
}

/**
 * An SDK error for one message → what the relay does next.
 *
 * Codes are firebase-admin's (`utils/error.js` MESSAGING_SERVER_TO_CLIENT_CODE),
 * not FCM's: UNREGISTERED and NOT_FOUND → registration-token-not-registered;
 * SENDER_ID_MISMATCH and PERMISSION_DENIED → mismatched-credential;
 * QUOTA_EXCEEDED and RESOURCE_EXHAUSTED → message-rate-exceeded; an invalid
 * token is plain INVALID_ARGUMENT. The SDK keeps neither the status nor the
 * headers (so no Retry-After) nor the error details, only code and message.
 */
export function translateFcmError (err: unknown, deviceToken: string): FcmOutcome {
  const code = errorCode(err)
  const message = errorMessage(err)
  const reason = safeReason(code, message, deviceToken)
  switch (code) {
    case 'messaging/registration-token-not-registered':
    case 'messaging/invalid-registration-token':
    case 'messaging/invalid-package-name':
      return { outcome: 'prune', reason }
    case 'messaging/mismatched-credential':
      // Only SENDER_ID_MISMATCH condemns the token. PERMISSION_DENIED (service
      // account without the FCM role, API disabled) shares the code and would
      // otherwise wipe every token of the installation base.
      return /sender ?id mismatch/i.test(message)
        ? { outcome: 'prune', reason }
        : { outcome: 'retry', reason: `${reason} (check the service account's FCM permission)` }
    case 'messaging/invalid-argument':
      // FCM v1 reports a malformed token as INVALID_ARGUMENT with this message
      // (docs "REST error codes for the HTTP v1 API", example 2); any other
      // invalid argument is about the message, which will never pass.
      return /registration token is not a valid/i.test(message)
        ? { outcome: 'prune', reason }
        : { outcome: 'drop', reason }
    case 'messaging/message-rate-exceeded':
    case 'messaging/topics-message-rate-exceeded':
      return { outcome: 'retry', reason, retryAfterMs: RATE_LIMIT_RETRY_AFTER_MS }
    case 'messaging/device-message-rate-exceeded':
    case 'messaging/server-unavailable':
    case 'messaging/internal-error':
    // Non-JSON answers with an unexpected status (a proxy's 502/504) and UNSPECIFIED_ERROR.
    case 'messaging/unknown-error':
    // Our credentials, not the token or the message: fixable by the operator.
    case 'messaging/authentication-error':
    case 'messaging/third-party-auth-error':
      return { outcome: 'retry', reason }
    default:
      // app/network-error, app/network-timeout, app/invalid-credential (the
      // OAuth token fetch failed), app/app-deleted, raw socket errors.
      if (code.startsWith('app/') || !code.startsWith('messaging/')) return { outcome: 'retry', reason }
      return { outcome: 'drop', reason }
  }
}

/**
 * The same file under a path spelled differently for each app (`dir/././file`).
 * `cert()` caches credentials process-wide by `JSON.stringify(argument)` and
 * ignores the agent of every later call with the same argument
 * (firebase-admin 13.9 `credential-factory.js`, `globalCertCreds`): a second
 * sender for the same file would fetch tokens through the first one's agent.
 * Senders without an agent can share one credential (and its token cache).
 */
function distinctPath (file: string, seq: number): string {
  const abs = resolve(file)
  return `${dirname(abs)}${sep}${`.${sep}`.repeat(seq)}${basename(abs)}`
}

function errorCode (err: unknown): string {
  const code = (err as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' && code !== '' ? code : 'unknown'
}

function errorMessage (err: unknown): string {
  const message = (err as { message?: unknown } | null | undefined)?.message
  return typeof message === 'string' ? message : ''
}

/**
 * A reason fit for logs and metrics: the code, and the provider's message with
 * the device token and anything shaped like a bearer token or JWT removed.
 */
export function safeReason (code: string, message: string, deviceToken: string): string {
  let text = message
    // app/invalid-credential wraps the token endpoint's error in boilerplate; keep the error.
    .replace(/^Credential implementation provided to initializeApp\(\) via the "credential" property failed to fetch a valid Google OAuth2 access token with the following error: "([\s\S]*)"\.[\s\S]*$/, 'access token fetch failed: $1')
  text = scrubDeviceToken(text, deviceToken)
    .replace(/Bearer\s+\S+/gi, 'Bearer [redacted]')
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '[jwt]')
    .replace(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g, '[key]')
    .replace(/\s+/g, ' ')
    .trim()
  if (text.length > 300) text = `${text.slice(0, 297)}...`
  return text === '' ? `fcm ${code}` : `fcm ${code}: ${text}`
}
