import { HeraldError, isHeraldError } from '../errors/index.js'

/** How long the outcome of one probe answers for (`/readyz` may be polled by several load balancers every second). */
export const PROBE_INTERVAL_MS = 1000

/**
 * `/readyz` proves the store takes writes by making one (a delete of a probe
 * key on LevelDB, through the storage guard, so a failure there stops writes
 * and starts healing as any failed write does; a SET with an expiry on Redis,
 * which a Redis out of memory, read-only or unable to persist refuses),
 * instead of knowing only about writes that happened to fail. One probe runs
 * at a time and its outcome is reused for `intervalMs`.
 */
export function writeProbe (write: () => Promise<void>, intervalMs = PROBE_INTERVAL_MS): () => Promise<void> {
  let last: { at: number, error: HeraldError | null } | undefined
  let running: Promise<HeraldError | null> | undefined
  return async () => {
    if (last === undefined || Date.now() - last.at >= intervalMs) {
      running ??= write().then(() => null, (err: unknown) => asUnavailable(err)).then((error) => {
        last = { at: Date.now(), error }
        running = undefined
        return error
      })
      await running
    }
    if (last?.error != null) throw last.error
  }
}

function asUnavailable (err: unknown): HeraldError {
  if (isHeraldError(err)) return err
  const message = err instanceof Error ? err.message : String(err)
  return new HeraldError('SERVER_UNAVAILABLE', `the store cannot be written: ${message}`, { cause: err })
}
