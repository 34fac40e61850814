import type { DeliveryResult, PushSender } from './types.js'

/**
 * The rule every sender follows for a delivery whose token belongs to another
 * provider: it never reaches the provider (which would call the token invalid, and
 * the relay would prune a live token), and it is dropped, not pruned: the token is
 * fine, only handed to the wrong sender. The relay worker routes by provider, so
 * this catches a routing bug; each sender factory wraps itself with it, so the rule
 * holds for any caller (test/contracts/push-sender.test.ts).
 */
export function ownTokensOnly (sender: PushSender): PushSender {
  const { provider } = sender
  return {
    provider,
    maxBatch: sender.maxBatch,
    async send (deliveries) {
      const own = deliveries.filter((d) => d.token.provider === provider)
      if (own.length === deliveries.length) return await sender.send(deliveries)
      const sent = own.length === 0 ? [] : await sender.send(own)
      let next = 0
      return deliveries.map((d): DeliveryResult => d.token.provider === provider
        ? sent[next++] ?? { jobId: d.jobId, outcome: 'retry', reason: `${provider}: no result for this delivery` }
        : { jobId: d.jobId, outcome: 'drop', reason: `a ${d.token.provider} token given to the ${provider} sender` })
    },
    close: async () => await sender.close(),
  }
}
