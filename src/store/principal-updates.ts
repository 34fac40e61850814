import type { Logger } from 'pino'
import { isHeraldError } from '../errors/index.js'

/**
 * Each user's update of the known principal in progress, one at a time per
 * user: `latest` waits for it, and the next one goes after it. A failed update
 * is logged, not thrown: it is retried the next time the user is seen (its
 * entry is not marked persisted), and until then memory has it. A store
 * refusing writes (full disk) is reported by the storage guard already: not
 * once per call here, hence debug for Herald's own errors.
 */
export class PrincipalUpdates {
  readonly #pending = new Map<string, Promise<void>>()
  readonly #logger: Logger

  constructor (logger: Logger) {
    this.#logger = logger
  }

  /** Whether an update of this user is in progress. */
  has (sub: string): boolean {
    return this.#pending.has(sub)
  }

  /**
   * Runs `update` after the user's previous one, or at once when none is in
   * progress (the first sight of a user, every CONNECT of a storm of new
   * devices, then costs no extra promise hop).
   */
  run (sub: string, update: () => Promise<void>): void {
    const previous = this.#pending.get(sub)
    const step = (previous === undefined ? update() : previous.then(update)).catch((err: unknown) => {
      if (isHeraldError(err)) this.#logger.debug({ code: err.code, sub }, 'could not store the newest principal of a user')
      else this.#logger.warn({ err, sub }, 'could not store the newest principal of a user')
    })
    this.#pending.set(sub, step)
    void step.finally(() => {
      if (this.#pending.get(sub) === step) this.#pending.delete(sub)
    })
  }

  /** Resolves once the updates of these users in progress now are done. */
  async settled (subs: readonly string[]): Promise<void> {
    await Promise.all(subs.map(async (sub) => await this.#pending.get(sub)))
  }

  /** Every update asked for so far is done (tests, shutdown). */
  async idle (): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending.values())
  }
}
