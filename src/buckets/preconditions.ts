import { HeraldError } from '../errors/index.js'

/** What a request's If-Match / If-None-Match headers ask for. */
export interface Preconditions {
  /** A version the object must have, or `*`: it must exist. */
  readonly ifMatch?: number | '*'
  /** `*`: the object must not exist (create only). */
  readonly ifNoneMatch?: '*'
}

/** `3`, `"3"` (an ETag as Herald sends it) or `*`; anything else is a bad request. */
export function parseIfMatch (header: string | undefined): number | '*' | undefined {
  if (header === undefined) return undefined
  const value = header.trim()
  if (value === '*') return '*'
  const match = /^(?:"(\d{1,15})"|(\d{1,15}))$/.exec(value)
  const digits = match?.[1] ?? match?.[2]
  if (digits === undefined) throw new HeraldError('INVALID_REQUEST', 'If-Match must be an object version (like 3 or "3") or *')
  return Number(digits)
}

export function parseIfNoneMatch (header: string | undefined): '*' | undefined {
  if (header === undefined) return undefined
  if (header.trim() === '*') return '*'
  throw new HeraldError('INVALID_REQUEST', 'If-None-Match supports only *')
}

/** The ETag Herald sends for an object version. */
export const etagOf = (version: number): string => `"${version}"`

/**
 * Checks the preconditions against the current version (undefined: no such
 * object). If-None-Match: * on an existing object is a conflict (409); an
 * If-Match that does not hold is 412.
 */
export function checkPreconditions (current: number | undefined, preconditions: Preconditions): void {
  if (preconditions.ifNoneMatch === '*' && current !== undefined) {
    throw new HeraldError('ALREADY_EXISTS', 'an object with this id exists')
  }
  const { ifMatch } = preconditions
  if (ifMatch === undefined) return
  if (current === undefined) throw new HeraldError('PRECONDITION_FAILED', 'If-Match was given but the object does not exist')
  if (ifMatch !== '*' && ifMatch !== current) {
    throw new HeraldError('PRECONDITION_FAILED', `If-Match: ${ifMatch} but the object is at version ${current}`)
  }
}
