import { errorCodes, type ConnackCode, type ErrorCode } from './codes.js'

/**
 * The one error class of Herald. `message` is safe to show to the caller and to
 * log: it never carries a token, a secret or a payload. The library error that
 * caused it, if any, stays in `cause`.
 */
export class HeraldError extends Error {
  readonly code: ErrorCode

  constructor (code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? errorCodes[code].message, options)
    this.name = 'HeraldError'
    this.code = code
  }

  get status (): number {
    return errorCodes[this.code].status
  }

  get connack (): ConnackCode {
    return errorCodes[this.code].connack
  }
}

export function isHeraldError (err: unknown): err is HeraldError {
  return err instanceof HeraldError
}
