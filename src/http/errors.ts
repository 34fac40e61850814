import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import Type, { type Static } from 'typebox'
import { errorCodes, HeraldError, isHeraldError } from '../errors/index.js'

/** Retry-After of every 503. */
const RETRY_AFTER_SEC = 5

/** The one error body of the HTTP API; the OpenAPI document gives it as every /v1 operation's 4XX and 5XX answer (app.ts). */
export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String({ enum: Object.keys(errorCodes), description: 'stable: README "Error codes"' }),
    message: Type.String(),
  }),
}, { description: 'refused or failed; `error.code` says why' })
export type ErrorBody = Static<typeof ErrorBody>

/** Translates anything a route or fastify throws into a HeraldError with a stable code. */
export function toHeraldError (err: unknown): HeraldError {
  if (isHeraldError(err)) return err
  const error = err as Partial<FastifyError>
  if (error.validation !== undefined) return new HeraldError('INVALID_REQUEST', describeValidation(error as FastifyError), { cause: err })
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HeraldError('INVALID_JSON', undefined, { cause: err })
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HeraldError('PAYLOAD_TOO_LARGE', 'the body is larger than http.bodyLimitBytes', { cause: err })
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HeraldError('UNSUPPORTED_MEDIA_TYPE', undefined, { cause: err })
  }
  // the store is closed for a moment while it heals (store/storage-guard.ts), or while the server stops
  if (error.code === 'LEVEL_DATABASE_NOT_OPEN') return new HeraldError('SERVER_UNAVAILABLE', 'the store is not available; retry later', { cause: err })
  if (error.statusCode === 404) return new HeraldError('NOT_FOUND', undefined, { cause: err })
  if (error.statusCode === 429) return new HeraldError('RATE_LIMITED', undefined, { cause: err })
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new HeraldError('INVALID_REQUEST', error.message, { cause: err })
  }
  return new HeraldError('INTERNAL_ERROR', undefined, { cause: err })
}

/** `body/data/x must be string`, naming the offending key for additionalProperties errors. */
function describeValidation (error: FastifyError): string {
  const first = error.validation?.[0]
  if (first === undefined) return error.message
  const where = `${error.validationContext ?? 'request'}${first.instancePath}`
  const params = first.params as { additionalProperty?: string }
  if (first.keyword === 'additionalProperties' && params.additionalProperty !== undefined) {
    return `${where}: unknown field ${params.additionalProperty}`
  }
  return `${where} ${first.message ?? 'is not valid'}`
}

export async function sendError (err: unknown, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const error = toHeraldError(err)
  if (error.code === 'INTERNAL_ERROR') request.log.error({ err: error.cause }, 'request failed')
  const body: ErrorBody = { error: { code: error.code, message: error.message } }
  // a full disk, a store that heals, a server not ready: worth retrying, not at once
  if (error.status === 503) reply.header('retry-after', String(RETRY_AFTER_SEC))
  await reply.code(error.status).send(body)
}
