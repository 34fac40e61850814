import type { FastifyInstance } from 'fastify'
import Type, { type Static } from 'typebox'
import { bucketEventsTopic, parseIfNoneMatch, scopePath } from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'
import { AclList, defaultReaders, defaultWriters } from './acl-list.js'
import {
  BucketName, BucketView, appBucketView, authorize, header, scopeRouteInfo, scopes, target, type ScopeRouteInfo,
} from './bucket-common.js'
import { registerObjectCollectionRoutes, registerObjectItemRoutes } from './bucket-objects.js'
import { NoContent } from './no-content.js'

const BucketAclBody = Type.Object({
  read: Type.Optional(AclList),
  write: Type.Optional(AclList),
}, { additionalProperties: false })
const PutAppBucketBody = Type.Object({ acl: Type.Optional(BucketAclBody) }, { additionalProperties: false })

type PutAppBucketBody = Static<typeof PutAppBucketBody>

/**
 * Buckets of JSON objects in the app, group and user scopes; every change is
 * published on `{scope}/buckets/{bucket}/events` (README "Buckets").
 */
export function registerBucketRoutes (app: FastifyInstance, ctx: HttpContext): void {
  // RFC 7396 names its own media type; a PATCH may use it or plain JSON
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'))

  // registration order is the order of the OpenAPI document
  for (const def of scopes) {
    const info = scopeRouteInfo(def)
    registerObjectCollectionRoutes(app, ctx, info)
    registerObjectItemRoutes(app, ctx, info)
    registerScopeBucketRoutes(app, ctx, info)
  }
  registerAppBucketRoutes(app, ctx)
}

/** `{scope}/buckets/:bucket`: describe a bucket, delete it with its objects. */
function registerScopeBucketRoutes (app: FastifyInstance, ctx: HttpContext, info: ScopeRouteInfo): void {
  const { buckets } = ctx
  const { def, bucketParams, base, what } = info

  app.get(base, {
    schema: { summary: `Describe a ${what}: its events topic${def.label === 'app' ? ' and ACL' : ''}`, params: bucketParams, response: { 200: BucketView } },
  }, async (request) => {
    const { scope, bucket } = target(ctx, request, 'read', def)
    const appBucket = scope.kind === 'app' ? buckets.getAppBucket(bucket) : undefined
    if (appBucket !== undefined) return appBucketView(appBucket)
    return { scope: scopePath(scope), name: bucket, eventsTopic: bucketEventsTopic(scope, bucket) }
  })

  app.delete(base, {
    schema: {
      summary: `Delete a ${what} and all its objects`,
      description: def.label === 'app' ? 'Admin only; the bucket must be created again before use.' : 'Emits BUCKET_DELETED even when the bucket had no objects.',
      params: bucketParams,
      response: { 204: NoContent },
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
      authorize(ctx, request.principal, scope, bucket, 'write')
    }
    await buckets.deleteBucket(scope, bucket, { sender: request.principal.sub })
    return await reply.code(204).send()
  })
}

/** `/app/buckets`: create an app bucket or replace its ACL (admin), list the visible ones. */
function registerAppBucketRoutes (app: FastifyInstance, ctx: HttpContext): void {
  const { buckets } = ctx

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
    const written = await buckets.putAppBucket(request.params.bucket, { read: acl.read ?? defaultReaders, write: acl.write ?? defaultWriters }, { onlyIfAbsent })
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
