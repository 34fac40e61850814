import Type from 'typebox'

/**
 * A route's 204 answer, in its response schema so the OpenAPI document says
 * what a successful DELETE answers (without it the document said 200).
 */
export const NoContent = Type.Null({ description: 'Done; no body' })
