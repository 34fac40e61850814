import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import Type, { type Static, type TSchema } from 'typebox'
import type { Principal } from '../../auth/index.js'
import {
  BUCKET_NAME_PATTERN, OBJECT_ID_PATTERN, bucketEventsTopic, etagOf, parseIfMatch, parseIfNoneMatch, scopePath,
  type BucketScope, type JsonObject, type Preconditions,
} from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import type { AppBucket, BucketObject } from '../../store/buckets.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'

// user and group ids are topic levels (auth/claims.ts)
const TopicLevelId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[^/+#\\u0000$][^/+#\\u0000]*$' })
const BucketName = Type.String({ pattern: BUCKET_NAME_PATTERN })
const ObjectId = Type.String({ pattern: OBJECT_ID_PATTERN })
/** Any JSON object: the body of a bucket object, or a merge patch of one. */
const JsonBody = Type.Object({}, { additionalProperties: true, description: 'any JSON object' })

const AclEntry = Type.String({ pattern: '^(authenticated|user:[^/+#\\u0000]+|group:[^/+#\\u0000]+|role:(device|service|admin))$' })
const BucketAclBody = Type.Object({
  read: Type.Optional(Type.Array(AclEntry, { maxItems: 256 })),
  write: Type.Optional(Type.Array(AclEntry, { maxItems: 256 })),
}, { additionalProperties: false })
const PutAppBucketBody = Type.Object({ acl: Type.Optional(BucketAclBody) }, { additionalProperties: false })

const ObjectView = Type.Object({
  id: Type.String(),
  version: Type.Integer(),
  createdAt: Type.String(),
  modifiedAt: Type.String(),
  owner: Type.Union([Type.String(), Type.Null()]),
  body: JsonBody,
})
const BucketView = Type.Object({
  scope: Type.String({ description: '`app`, `users/{uid}` or `groups/{gid}`' }),
  name: Type.String(),
  eventsTopic: Type.String({ description: 'subscribe to it (MQTT or the subscriptions API) to get change events' }),
  acl: Type.Optional(Type.Object({ read: Type.Array(Type.String()), write: Type.Array(Type.String()) })),
  createdAt: Type.Optional(Type.String()),
  updatedAt: Type.Optional(Type.String()),
})

type PutAppBucketBody = Static<typeof PutAppBucketBody>

/** Until an admin says otherwise: any token holder reads, services and admins write (as app topics). */
const defaultAcl = { read: ['authenticated'], write: ['role:service', 'role:admin'] }

interface ScopeRoutes {
  /** Path prefix under /v1. */
  readonly prefix: string
  readonly label: string
  readonly params: Record<string, TSchema>
  resolve (params: Record<string, string>, principal: Principal): BucketScope
}

const scopes: readonly ScopeRoutes[] = [
  { prefix: '/app', label: 'app', params: {}, resolve: () => ({ kind: 'app' }) },
  {
    prefix: '/users/:uid',
    label: 'user',
    params: { uid: { ...TopicLevelId, description: 'a user id; `me` is the caller' } },
    resolve (params, principal) {
      const uid = params.uid === 'me' ? principal.sub : params.uid
      if (uid === null || uid === undefined) throw new HeraldError('NOT_AUTHORIZED', 'the caller has no user id')
      return { kind: 'user', id: uid }
    },
  },
  {
    prefix: '/groups/:gid',
    label: 'group',
    params: { gid: TopicLevelId },
    resolve: (params) => ({ kind: 'group', id: params.gid as string }),
  },
]

/**
 * Buckets of JSON objects in the app, group and user scopes; every change is
 * published on `{scope}/buckets/{bucket}/events` (README "Buckets").
 */
export function registerBucketRoutes (app: FastifyInstance, ctx: HttpContext): void {
  const { buckets } = ctx
  const maxLimit = ctx.config.buckets.maxListLimit

  // RFC 7396 names its own media type; a PATCH may use it or plain JSON
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'))

  const objectView = (object: BucketObject): Static<typeof ObjectView> => ({
    id: object.id, version: object.version, createdAt: object.createdAt, modifiedAt: object.modifiedAt, owner: object.owner, body: object.body,
  })
  const appBucketView = (bucket: AppBucket): Static<typeof BucketView> => ({
    scope: 'app',
    name: bucket.name,
    eventsTopic: bucketEventsTopic({ kind: 'app' }, bucket.name),
    acl: { read: [...bucket.acl.read], write: [...bucket.acl.write] },
    createdAt: bucket.createdAt,
    updatedAt: bucket.updatedAt,
  })

  /**
   * Scope rules of the topic namespace, then the caller's deny filters (the
   * ACL MQTT applies: acl.bucketRights). An app bucket the caller may neither
   * read nor write answers 404, as if it did not exist (like app topics).
   */
  function authorize (principal: Principal, scope: BucketScope, bucket: string, need: 'read' | 'write'): void {
    const appBucket = scope.kind === 'app' ? buckets.getAppBucket(bucket) : undefined
    const rights = ctx.acl.bucketRights(principal, scope, bucket, appBucket?.acl)
    if (scope.kind === 'app' && (appBucket === undefined || (!rights.read && !rights.write))) throw new HeraldError('NOT_FOUND', 'no such bucket')
    if (!rights[need]) throw new HeraldError('NOT_AUTHORIZED', `the caller may not ${need} ${scopePath(scope)}/buckets/${bucket}`)
  }

  function target (request: FastifyRequest, need: 'read' | 'write', def: ScopeRoutes): { scope: BucketScope, bucket: string, id: string } {
    const params = request.params as Record<string, string>
    const scope = def.resolve(params, request.principal)
    const bucket = params.bucket as string
    authorize(request.principal, scope, bucket, need)
    return { scope, bucket, id: params.id ?? '' }
  }

  function preconditions (request: FastifyRequest, allowIfNoneMatch: boolean): Preconditions {
    const ifMatch = parseIfMatch(header(request, 'if-match'))
    const ifNoneMatch = allowIfNoneMatch ? parseIfNoneMatch(header(request, 'if-none-match')) : undefined
    if (!allowIfNoneMatch && header(request, 'if-none-match') !== undefined) throw new HeraldError('INVALID_REQUEST', 'If-None-Match is only for PUT')
    if (ifMatch !== undefined && ifNoneMatch !== undefined) throw new HeraldError('INVALID_REQUEST', 'If-Match and If-None-Match together')
    return { ...(ifMatch !== undefined && { ifMatch }), ...(ifNoneMatch !== undefined && { ifNoneMatch }) }
  }

  async function sendObject (reply: FastifyReply, status: number, object: BucketObject): Promise<FastifyReply> {
    return await reply.code(status).header('etag', etagOf(object.version)).send(objectView(object))
  }

  for (const def of scopes) {
    const bucketParams = Type.Object({ ...def.params, bucket: BucketName })
    const objectParams = Type.Object({ ...def.params, bucket: BucketName, id: ObjectId })
    const base = `${def.prefix}/buckets/:bucket`
    const what = `${def.label} bucket`

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
      const { scope, bucket } = target(request, 'write', def)
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
      const { scope, bucket } = target(request, 'read', def)
      const { limit, after } = request.query as { limit: number, after?: string }
      const page = await buckets.listObjects(scope, bucket, { limit, ...(after !== undefined && { after }) })
      return { objects: page.objects.map(objectView), next: page.next }
    })

    app.get(`${base}/objects/:id`, {
      schema: { summary: `Get an object of a ${what}`, params: objectParams, response: { 200: ObjectView } },
    }, async (request, reply) => {
      const { scope, bucket, id } = target(request, 'read', def)
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
      const { scope, bucket, id } = target(request, 'write', def)
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
      const { scope, bucket, id } = target(request, 'write', def)
      const conditions = preconditions(request, false)
      const object = await buckets.patchObject(scope, bucket, id, request.body as JsonObject, { ...conditions, sender: request.principal.sub })
      return await sendObject(reply, 200, object)
    })

    app.delete(`${base}/objects/:id`, {
      schema: { summary: `Delete an object of a ${what}`, description: '`If-Match: <version>` deletes only that version (412 otherwise).', params: objectParams },
    }, async (request, reply) => {
      const { scope, bucket, id } = target(request, 'write', def)
      const conditions = preconditions(request, false)
      await buckets.deleteObject(scope, bucket, id, { ...conditions, sender: request.principal.sub })
      return await reply.code(204).send()
    })

    app.get(base, {
      schema: { summary: `Describe a ${what}: its events topic${def.label === 'app' ? ' and ACL' : ''}`, params: bucketParams, response: { 200: BucketView } },
    }, async (request) => {
      const { scope, bucket } = target(request, 'read', def)
      const appBucket = scope.kind === 'app' ? buckets.getAppBucket(bucket) : undefined
      if (appBucket !== undefined) return appBucketView(appBucket)
      return { scope: scopePath(scope), name: bucket, eventsTopic: bucketEventsTopic(scope, bucket) }
    })

    app.delete(base, {
      schema: {
        summary: `Delete a ${what} and all its objects`,
        description: def.label === 'app' ? 'Admin only; the bucket must be created again before use.' : 'Emits BUCKET_DELETED even when the bucket had no objects.',
        params: bucketParams,
      },
    }, async (request, reply) => {
      const params = request.params as Record<string, string>
      const scope = def.resolve(params, request.principal)
      const bucket = params.bucket as string
      if (scope.kind === 'app') {
        requireRole(request.principal, 'admin')
        const appBucket = buckets.getAppBucket(bucket)
        if (appBucket === undefined) throw new HeraldError('NOT_FOUND', 'no such bucket')
        // deny filters bind admins too
        if (!ctx.acl.bucketRights(request.principal, scope, bucket, appBucket.acl).write) throw new HeraldError('NOT_AUTHORIZED', `the caller may not write app/buckets/${bucket}`)
      } else {
        authorize(request.principal, scope, bucket, 'write')
      }
      await buckets.deleteBucket(scope, bucket, { sender: request.principal.sub })
      return await reply.code(204).send()
    })
  }

  app.put<{ Params: { bucket: string }, Body: PutAppBucketBody }>('/app/buckets/:bucket', {
    schema: {
      summary: 'Create an app bucket or replace its ACL (admin)',
      description: 'ACL entries as for app topics. Default: `read` any authenticated caller, `write` services and admins. `If-None-Match: *` only creates (409 when it exists).',
      params: Type.Object({ bucket: BucketName }),
      body: PutAppBucketBody,
      response: { 200: BucketView, 201: BucketView },
    },
    // every field is optional, so an empty request creates with the default ACL
    preValidation: async (request) => { request.body ??= {} },
  }, async (request, reply) => {
    requireRole(request.principal, 'admin')
    const onlyIfAbsent = parseIfNoneMatch(header(request, 'if-none-match')) === '*'
    const acl = request.body.acl ?? {}
    const written = await buckets.putAppBucket(request.params.bucket, { read: acl.read ?? defaultAcl.read, write: acl.write ?? defaultAcl.write }, { onlyIfAbsent })
    if (written === undefined) throw new HeraldError('ALREADY_EXISTS', 'the bucket exists')
    return await reply.code(written.created ? 201 : 200).send(appBucketView(written.bucket))
  })

  app.get('/app/buckets', {
    schema: { summary: 'List the app buckets the caller may read or write', response: { 200: Type.Object({ buckets: Type.Array(BucketView) }) } },
  }, async (request) => {
    const visible = buckets.listAppBuckets().filter((bucket) => {
      const rights = ctx.acl.bucketRights(request.principal, { kind: 'app' }, bucket.name, bucket.acl)
      return rights.read || rights.write
    })
    return { buckets: visible.map(appBucketView) }
  })
}

function header (request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}
