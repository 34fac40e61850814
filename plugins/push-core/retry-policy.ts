/** Exponential backoff with jitter for relay retries. Pure, so the schedule is testable. */

export interface RetryPolicy {
  readonly baseMs: number
  readonly maxMs: number
}

/**
 * Delay before attempt `attempt + 1`, after `attempt` failed ones (1-based).
 * "Equal jitter": half of the exponential step is fixed, half random, so
 * retries of many jobs that failed together spread out without ever retrying
 * immediately. A provider's Retry-After is a floor.
 */
export function retryDelayMs (attempt: number, policy: RetryPolicy, retryAfterMs?: number, random: () => number = Math.random): number {
  const step = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1))
  const jittered = step / 2 + random() * (step / 2)
  return Math.round(Math.max(jittered, retryAfterMs ?? 0))
}
