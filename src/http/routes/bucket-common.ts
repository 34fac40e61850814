import type { FastifyReply, FastifyRequest } from 'fastify'
import Type, { type Static, type TObject, type TSchema } from 'typebox'
import { TopicLevelId, type Principal } from '../../auth/index.js'
import {
  BUCKET_NAME_PATTERN, OBJECT_ID_PATTERN, bucketEventsTopic, etagOf, parseIfMatch, parseIfNoneMatch, scopePath,
  type BucketScope, type Preconditions,
} from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import type { AppBucket, BucketObject } from '../../buckets/index.js'
import type { HttpContext } from '../context.js'

// Schemas and helpers shared by the bucket routes (buckets.ts) and the object routes (bucket-objects.ts).

export const BucketName = Type.String({ pattern: BUCKET_NAME_PATTERN })
export const ObjectId = Type.String({ pattern: OBJECT_ID_PATTERN })
/** Any JSON object: the body of a bucket object, or a merge patch of one. */
export const JsonBody = Type.Object({}, { additionalProperties: true, description: 'any JSON object' })

export const ObjectView = Type.Object({
  id: Type.String(),
  version: Type.Integer(),
  createdAt: Type.String(),
  modifiedAt: Type.String(),
  owner: Type.Union([Type.String(), Type.Null()]),
  body: JsonBody,
})
export const BucketView = Type.Object({
  scope: Type.String({ description: '`app`, `users/{uid}` or `groups/{gid}`' }),
  name: Type.String(),
  eventsTopic: Type.String({ description: 'subscribe to it (MQTT or the subscriptions API) to get change events' }),
  acl: Type.Optional(Type.Object({ read: Type.Array(Type.String()), write: Type.Array(Type.String()) })),
  createdAt: Type.Optional(Type.String()),
  updatedAt: Type.Optional(Type.String()),
})

export interface ScopeRoutes {
  /** Path prefix under /v1. */
  readonly prefix: string
  readonly label: string
  readonly params: Record<string, TSchema>
  resolve (params: Record<string, string>, principal: Principal): BucketScope
}

export const scopes: readonly ScopeRoutes[] = [
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

/** The route paths and parameter schemas of one scope, built once and shared by its routes. */
export interface ScopeRouteInfo {
  readonly def: ScopeRoutes
  readonly bucketParams: TObject
  readonly objectParams: TObject
  /** `{prefix}/buckets/:bucket` */
  readonly base: string
  /** For summaries: `app bucket`, `user bucket`, `group bucket`. */
  readonly what: string
}

export function scopeRouteInfo (def: ScopeRoutes): ScopeRouteInfo {
  return {
    def,
    bucketParams: Type.Object({ ...def.params, bucket: BucketName }),
    objectParams: Type.Object({ ...def.params, bucket: BucketName, id: ObjectId }),
    base: `${def.prefix}/buckets/:bucket`,
    what: `${def.label} bucket`,
  }
}

export function objectView (object: BucketObject): Static<typeof ObjectView> {
  return { id: object.id, version: object.version, createdAt: object.createdAt, modifiedAt: object.modifiedAt, owner: object.owner, body: object.body }
}

export function appBucketView (bucket: AppBucket): Static<typeof BucketView> {
  return {
    scope: 'app',
    name: bucket.name,
    eventsTopic: bucketEventsTopic({ kind: 'app' }, bucket.name),
    acl: { read: [...bucket.acl.read], write: [...bucket.acl.write] },
    createdAt: bucket.createdAt,
    updatedAt: bucket.updatedAt,
  }
}

/**
 * Scope rules of the topic namespace, then the caller's deny filters (the
 * ACL MQTT applies: acl.bucketRights). An app bucket the caller may neither
 * read nor write answers 404, as if it did not exist (like app topics).
 */
export function authorize (ctx: HttpContext, principal: Principal, scope: BucketScope, bucket: string, need: 'read' | 'write'): void {
  const appBucket = scope.kind === 'app' ? ctx.buckets.getAppBucket(bucket) : undefined
  const rights = ctx.acl.bucketRights(principal, scope, bucket, appBucket?.acl)
  if (scope.kind === 'app' && (appBucket === undefined || (!rights.read && !rights.write))) throw new HeraldError('NOT_FOUND', 'no such bucket')
  if (!rights[need]) throw new HeraldError('NOT_AUTHORIZED', `the caller may not ${need} ${scopePath(scope)}/buckets/${bucket}`)
}

/** The scope, bucket and object id a request names, once the caller may `need` the bucket. */
export function target (ctx: HttpContext, request: FastifyRequest, need: 'read' | 'write', def: ScopeRoutes): { scope: BucketScope, bucket: string, id: string } {
  const params = request.params as Record<string, string>
  const scope = def.resolve(params, request.principal)
  const bucket = params.bucket as string
  authorize(ctx, request.principal, scope, bucket, need)
  return { scope, bucket, id: params.id ?? '' }
}

export function preconditions (request: FastifyRequest, allowIfNoneMatch: boolean): Preconditions {
  const ifMatch = parseIfMatch(header(request, 'if-match'))
  const ifNoneMatch = allowIfNoneMatch ? parseIfNoneMatch(header(request, 'if-none-match')) : undefined
  if (!allowIfNoneMatch && header(request, 'if-none-match') !== undefined) throw new HeraldError('INVALID_REQUEST', 'If-None-Match is only for PUT')
  if (ifMatch !== undefined && ifNoneMatch !== undefined) throw new HeraldError('INVALID_REQUEST', 'If-Match and If-None-Match together')
  return { ...(ifMatch !== undefined && { ifMatch }), ...(ifNoneMatch !== undefined && { ifNoneMatch }) }
}

export async function sendObject (reply: FastifyReply, status: number, object: BucketObject): Promise<FastifyReply> {
  return await reply.code(status).header('etag', etagOf(object.version)).send(objectView(object))
}

export function header (request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}
