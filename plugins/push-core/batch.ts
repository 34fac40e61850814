import type { RelayJob } from './job.js'
import type { DropReason } from './worker-ports.js'
import type { Delivery, DeliveryResult, DeviceToken, PushProvider, PushSender } from './types.js'

/** A job of the batch that will not be sent, and why. */
export interface Unsendable {
  readonly job: RelayJob
  readonly provider: PushProvider | 'none'
  readonly why: DropReason
  readonly detail: string
}

export interface Sendable {
  readonly job: RelayJob
  readonly delivery: Delivery
}

/**
 * Sorts a batch of ready jobs, given each installation's token now (same
 * order): those to give up (expired, no token, provider disabled for the
 * message or not configured) and those to send, grouped by provider.
 */
export function planBatch (
  batch: readonly RelayJob[],
  tokens: ReadonlyArray<DeviceToken | null>,
  now: number,
  configured: (provider: PushProvider) => boolean
): { unsendable: Unsendable[], byProvider: Map<PushProvider, Sendable[]> } {
  const unsendable: Unsendable[] = []
  const byProvider = new Map<PushProvider, Sendable[]>()
  batch.forEach((job, i) => {
    const token = tokens[i] ?? null
    if (now >= job.expiresAt) {
      unsendable.push({ job, provider: 'none', why: 'expired', detail: 'the message ttl ran out' })
      return
    }
    if (token === null) {
      unsendable.push({ job, provider: 'none', why: 'no-token', detail: 'the installation has no push token' })
      return
    }
    const disabled = token.provider === 'fcm' ? job.content.kind === 'push' && job.content.fcm?.enabled === false : job.content.kind === 'push' && job.content.apns?.enabled === false
    if (disabled) {
      unsendable.push({ job, provider: token.provider, why: 'disabled', detail: `${token.provider} disabled for this message` })
      return
    }
    if (!configured(token.provider)) {
      unsendable.push({ job, provider: token.provider, why: 'not-configured', detail: `push.${token.provider} is not configured` })
      return
    }
    let list = byProvider.get(token.provider)
    if (list === undefined) byProvider.set(token.provider, list = [])
    list.push({ job, delivery: { jobId: job.id, token, content: job.content, expiresAt: job.expiresAt } })
  })
  return { unsendable, byProvider }
}

/**
 * Sends one chunk (at most the sender's `maxBatch`) and answers one result per
 * item, in order, with the latency of the call. Never rejects: a throw, or a
 * delivery the sender gave no result for, is a retry.
 */
export async function sendChunk (sender: PushSender, items: readonly Sendable[], now: () => number): Promise<{ results: DeliveryResult[], latencyMs: number }> {
  const started = now()
  let results: DeliveryResult[]
  try {
    results = await sender.send(items.map((item) => item.delivery))
  } catch (err) {
    // a sender reports failures per delivery; a throw is a bug or an outage of the whole call
    const reason = err instanceof Error ? err.message : 'send failed'
    results = items.map((item) => ({ jobId: item.job.id, outcome: 'retry', reason }))
  }
  const latencyMs = now() - started
  const byJob = new Map(results.map((result) => [result.jobId, result]))
  return {
    results: items.map(({ job }) => byJob.get(job.id) ?? { jobId: job.id, outcome: 'retry', reason: 'no result from sender' }),
    latencyMs
  }
}
