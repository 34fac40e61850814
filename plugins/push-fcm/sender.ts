import { readConfiguredFile } from '../push-core/config-file.js'
import { ownTokensOnly } from '../push-core/own-tokens.js'
import type { Delivery, DeliveryResult, PushSender } from '../push-core/types.js'
import { EndpointAgent, parseEndpoint } from './endpoint-agent.js'
import { openFirebaseClient, type FcmOutcome, type FirebaseClient } from './firebase-sender.js'
import { formatFcm } from './format.js'

/** Herald's `push.fcm` config section. */
export interface FcmConfig {
  readonly serviceAccountFile: string
  readonly projectId: string | null
  readonly endpoint: string | null
  readonly caFile: string | null
}

/** What the sender logs through; pino and push-core's RelayLogger fit. */
export interface FcmLogger {
  warn (fields: object, message: string): void
}

/** FCM `sendEach` takes at most 500 messages. */
export const FCM_MAX_BATCH = 500

/**
 * The FCM relay sender. Reads the service account at once and throws on bad
 * config (errors name the key); after that, `send` never throws: every
 * delivery gets a result, in order.
 */
export function createFcmSender (config: FcmConfig, logger?: FcmLogger): PushSender {
  const serviceAccount = readServiceAccount(config.serviceAccountFile)
  const projectId = config.projectId ?? serviceAccount.projectId
  const ca = config.caFile !== null ? readConfiguredFile(config.caFile, 'push.fcm.caFile') : undefined
  const agent = config.endpoint !== null ? new EndpointAgent(parseEndpoint(config.endpoint), ca) : undefined
  if (config.endpoint === null && config.caFile !== null) {
    logger?.warn({ provider: 'fcm' }, 'push.fcm.caFile is ignored without push.fcm.endpoint')
  }
  let client: FirebaseClient
  try {
    client = openFirebaseClient({ serviceAccountFile: config.serviceAccountFile, projectId, ...(agent !== undefined ? { agent } : {}) })
  } catch (err) {
    agent?.destroy()
    // firebase-admin checks the private key here (node-forge).
    throw new Error('push.fcm.serviceAccountFile: rejected by firebase-admin (is private_key a PEM key?)', { cause: err })
  }
  let closing: Promise<void> | undefined

  const sendBatch = async (deliveries: readonly Delivery[]): Promise<DeliveryResult[]> => {
    let outcomes: FcmOutcome[]
    try {
      outcomes = await client.sendEach(deliveries.map((d) => formatFcm(d)))
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code
      const reason = `fcm batch failed: ${typeof code === 'string' ? code : 'error'}`
      logger?.warn({ provider: 'fcm', size: deliveries.length, code }, 'fcm sendEach failed as a whole; every delivery will be retried')
      return deliveries.map((d) => ({ jobId: d.jobId, outcome: 'retry', reason }))
    }
    return deliveries.map((d, i) => ({ jobId: d.jobId, ...(outcomes[i] ?? { outcome: 'retry', reason: 'fcm: missing outcome' }) }))
  }

  return ownTokensOnly({
    provider: 'fcm',
    maxBatch: FCM_MAX_BATCH,

    async send (deliveries) {
      if (closing !== undefined) {
        return deliveries.map((d) => ({ jobId: d.jobId, outcome: 'retry', reason: 'fcm sender closed' }))
      }
      const results: DeliveryResult[] = []
      for (let start = 0; start < deliveries.length; start += FCM_MAX_BATCH) {
        results.push(...await sendBatch(deliveries.slice(start, start + FCM_MAX_BATCH)))
      }
      return results
    },

    async close () {
      closing ??= client.close().finally(() => agent?.destroy())
      await closing
    },
  })
}

/**
 * Checks the service account file up front, so a bad one fails at start with
 * the key named (firebase-admin reads it again itself, see firebase-sender.ts).
 */
function readServiceAccount (file: string): { projectId: string } {
  const key = 'push.fcm.serviceAccountFile'
  let json: unknown
  try {
    json = JSON.parse(readConfiguredFile(file, key).toString('utf8'))
  } catch (err) {
    if (err instanceof SyntaxError) throw new Error(`${key}: not valid JSON`)
    throw err
  }
  const o = (json ?? {}) as Record<string, unknown>
  if (o.type !== undefined && o.type !== 'service_account') throw new Error(`${key}: type must be "service_account"`)
  for (const field of ['project_id', 'client_email', 'private_key'] as const) {
    const v = o[field]
    if (typeof v !== 'string' || v === '') throw new Error(`${key}: "${field}" is missing`)
  }
  return { projectId: o.project_id as string }
}
