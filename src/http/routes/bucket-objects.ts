import type { FastifyInstance } from 'fastify'
import Type from 'typebox'
import { scopePath, type JsonObject } from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import type { HttpContext } from '../context.js'
import { JsonBody, ObjectId, ObjectView, objectView, preconditions, sendObject, target, type ScopeRouteInfo } from './bucket-common.js'
import { NoContent } from './no-content.js'

/** `…/buckets/:bucket/objects`: create an object, list the objects. */
export function registerObjectCollectionRoutes (app: FastifyInstance, ctx: HttpContext, info: ScopeRouteInfo): void {
  const { buckets } = ctx
  const { def, bucketParams, base, what } = info
  const maxLimit = ctx.config.buckets.maxListLimit

  app.post(`${base}/objects`, {
    schema: {
      summary: `Create an object in a ${what}`,
      description: 'The body is the object. `?id=` names it (409 when it exists); otherwise an id is generated.',
      params: bucketParams,
      querystring: Type.Object({ id: Type.Optional(ObjectId) }, { additionalProperties: false }),
      body: JsonBody,
      response: { 201: ObjectView },
    },
  }, async (request, reply) => {
    const { scope, bucket } = target(ctx, request, 'write', def)
    const { id } = request.query as { id?: string }
    const object = await buckets.createObject(scope, bucket, id, request.body as JsonObject, { sender: request.principal.sub })
    reply.header('location', `/v1/${scopePath(scope)}/buckets/${bucket}/objects/${object.id}`)
    return await sendObject(reply, 201, object)
  })

  app.get(`${base}/objects`, {
    schema: {
      summary: `List the objects of a ${what}`,
      description: 'In id order. Pass the `next` of a page as `after` to get the following one; `next` is null on the last page.',
      params: bucketParams,
      querystring: Type.Object({
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: maxLimit, default: Math.min(20, maxLimit) })),
        after: Type.Optional(ObjectId),
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ objects: Type.Array(ObjectView), next: Type.Union([Type.String(), Type.Null()]) }) },
    },
  }, async (request) => {
    const { scope, bucket } = target(ctx, request, 'read', def)
    const { limit, after } = request.query as { limit: number, after?: string }
    const page = await buckets.listObjects(scope, bucket, { limit, ...(after !== undefined && { after }) })
    return { objects: page.objects.map(objectView), next: page.next }
  })
}

/** `…/buckets/:bucket/objects/:id`: get, put, patch and delete one object. */
export function registerObjectItemRoutes (app: FastifyInstance, ctx: HttpContext, info: ScopeRouteInfo): void {
  const { buckets } = ctx
  const { def, objectParams, base, what } = info

  app.get(`${base}/objects/:id`, {
    schema: { summary: `Get an object of a ${what}`, params: objectParams, response: { 200: ObjectView } },
  }, async (request, reply) => {
    const { scope, bucket, id } = target(ctx, request, 'read', def)
    const object = await buckets.getObject(scope, bucket, id)
    if (object === undefined) throw new HeraldError('NOT_FOUND', 'no such object')
    return await sendObject(reply, 200, object)
  })

  app.put(`${base}/objects/:id`, {
    schema: {
      summary: `Create or replace an object of a ${what}`,
      description: '`If-Match: <version>` replaces only that version (412 otherwise); `If-None-Match: *` only creates (409 when it exists).',
      params: objectParams,
      body: JsonBody,
      response: { 200: ObjectView, 201: ObjectView },
    },
  }, async (request, reply) => {
    const { scope, bucket, id } = target(ctx, request, 'write', def)
    const conditions = preconditions(request, true)
    const { object, created } = await buckets.putObject(scope, bucket, id, request.body as JsonObject, { ...conditions, sender: request.principal.sub })
    return await sendObject(reply, created ? 201 : 200, object)
  })

  app.patch(`${base}/objects/:id`, {
    schema: {
      summary: `Change part of an object of a ${what} (JSON merge patch, RFC 7396)`,
      description: 'Members replace, `null` removes, objects merge. `If-Match: <version>` applies only to that version (412 otherwise).',
      params: objectParams,
      body: JsonBody,
      response: { 200: ObjectView },
    },
  }, async (request, reply) => {
    const { scope, bucket, id } = target(ctx, request, 'write', def)
    const conditions = preconditions(request, false)
    const object = await buckets.patchObject(scope, bucket, id, request.body as JsonObject, { ...conditions, sender: request.principal.sub })
    return await sendObject(reply, 200, object)
  })

  app.delete(`${base}/objects/:id`, {
    schema: { summary: `Delete an object of a ${what}`, description: '`If-Match: <version>` deletes only that version (412 otherwise).', params: objectParams, response: { 204: NoContent } },
  }, async (request, reply) => {
    const { scope, bucket, id } = target(ctx, request, 'write', def)
    const conditions = preconditions(request, false)
    await buckets.deleteObject(scope, bucket, id, { ...conditions, sender: request.principal.sub })
    return await reply.code(204).send()
  })
}
