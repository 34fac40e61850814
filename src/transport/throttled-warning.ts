import type { Logger } from 'pino'

/**
 * A warning about refused connections that a burst must not turn into a
 * flood of log lines: at most one line per interval, carrying the count of
 * refusals since the last one; the rest of a burst is reported when the
 * interval is over.
 */
export class ThrottledWarning {
  readonly #logger: Logger
  readonly #message: string
  /** what the line says besides the count, read when it is written */
  readonly #details: () => Record<string, unknown>
  readonly #everyMs: number
  #unlogged = 0
  #lastLog = -Infinity
  #timer: NodeJS.Timeout | undefined

  constructor (logger: Logger, message: string, details: () => Record<string, unknown>, everyMs = 10_000) {
    this.#logger = logger
    this.#message = message
    this.#details = details
    this.#everyMs = everyMs
  }

  /** One more refusal. */
  count (): void {
    this.#unlogged++
    const wait = this.#lastLog + this.#everyMs - Date.now()
    if (wait <= 0) this.#log()
    else this.#timer ??= setTimeout(() => this.#log(), wait).unref()
  }

  close (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #log (): void {
    this.close()
    if (this.#unlogged === 0) return
    this.#logger.warn({ refused: this.#unlogged, ...this.#details() }, this.#message)
    this.#unlogged = 0
    this.#lastLog = Date.now()
  }
}
