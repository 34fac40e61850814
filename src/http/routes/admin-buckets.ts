import type { FastifyInstance, FastifyRequest } from 'fastify'
import Type, { type Static } from 'typebox'
import { isTopicLevelId } from '../../auth/index.js'
import { BUCKET_NAME_PATTERN, bucketEventsTopic, type BucketScope } from '../../buckets/index.js'
import { HeraldError } from '../../errors/index.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'
import { appBucketView, BucketView } from './bucket-common.js'

/**
 * `GET /v1/admin/buckets?scope=`: the buckets of one scope, for an operator
 * browsing them (the console's Buckets page, scripts). A user's or group's
 * buckets exist only through their objects, so no other route names them;
 * their objects are then read with the scope's own object routes, which let
 * an admin read any bucket.
 */

const ScopeQuery = Type.Object({
  scope: Type.Optional(Type.String({ minLength: 3, maxLength: 200, default: 'app', description: '`app` (the default), `users/{uid}` or `groups/{gid}`' })),
  after: Type.Optional(Type.String({ pattern: BUCKET_NAME_PATTERN, description: 'the `next` of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
}, { additionalProperties: false })
const BucketsPage = Type.Object({
  scope: Type.String(),
  buckets: Type.Array(BucketView, { description: 'in name order: app buckets as created (with their ACL); a user\'s or group\'s buckets that hold objects' }),
  next: Type.Union([Type.String(), Type.Null()], { description: 'pass as `after` for the next page; null on the last' }),
})

type ScopeQuery = Static<typeof ScopeQuery>

/** `app`, `users/{uid}` or `groups/{gid}` with a usable id; INVALID_REQUEST otherwise. */
export function parseScope (text: string): BucketScope {
  if (text === 'app') return { kind: 'app' }
  const slash = text.indexOf('/')
  const kind = text.slice(0, slash)
  const id = text.slice(slash + 1)
  if (slash > 0 && (kind === 'users' || kind === 'groups') && isTopicLevelId(id)) return { kind: kind === 'users' ? 'user' : 'group', id }
  throw new HeraldError('INVALID_REQUEST', 'scope must be app, users/{uid} or groups/{gid}')
}

export function registerAdminBucketRoutes (app: FastifyInstance, ctx: HttpContext): void {
  app.get<{ Querystring: ScopeQuery }>('/admin/buckets', {
    // before the query is validated: a caller who is not admin learns nothing
    preValidation: async (request: FastifyRequest) => { requireRole(request.principal, 'admin') },
    schema: {
      summary: 'List the buckets of a scope (admin)',
      description: 'App buckets as created by an admin; a user\'s or group\'s buckets that hold objects. Read their objects with `GET /v1/{scope}/buckets/{bucket}/objects`.',
      querystring: ScopeQuery,
      response: { 200: BucketsPage },
    },
  }, async (request) => {
    const { scope: path = 'app', after, limit = 100 } = request.query
    const scope = parseScope(path)
    if (scope.kind === 'app') {
      const all = ctx.buckets.listAppBuckets().filter((bucket) => after === undefined || bucket.name > after)
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      const page = all.slice(0, limit)
      return { scope: 'app', buckets: page.map(appBucketView), next: all.length > limit ? (page[page.length - 1]?.name ?? null) : null }
    }
    const { names, next } = await ctx.buckets.listBuckets(scope, { limit, ...(after !== undefined && { after }) })
    return { scope: path, buckets: names.map((name) => ({ scope: path, name, eventsTopic: bucketEventsTopic(scope, name) })), next }
  })
}
