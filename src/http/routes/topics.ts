import type { FastifyInstance } from 'fastify'
import Type, { type Static } from 'typebox'
import { HeraldError } from '../../errors/index.js'
import type { AppTopic } from '../../store/app-topics.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'
import { AclList, defaultReaders, defaultWriters } from './acl-list.js'
import { NoContent } from './no-content.js'

const TopicAcl = Type.Object({
  subscribe: Type.Optional(AclList),
  publish: Type.Optional(AclList),
}, { additionalProperties: false })
const PutBody = Type.Object({ acl: Type.Optional(TopicAcl) }, { additionalProperties: false })
const NameParams = Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) })
const TopicView = Type.Object({
  name: Type.String(),
  mqttTopic: Type.String(),
  acl: Type.Object({ subscribe: Type.Array(Type.String()), publish: Type.Array(Type.String()) }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
})

type PutBody = Static<typeof PutBody>
type NameParams = Static<typeof NameParams>

/** App-scope topics (`app/{name}`), created by admins with their own ACL. */
export function registerTopicRoutes (app: FastifyInstance, ctx: HttpContext): void {
  const view = (topic: AppTopic): Static<typeof TopicView> => ({
    name: topic.name,
    mqttTopic: `app/${topic.name}`,
    acl: { subscribe: [...topic.acl.subscribe], publish: [...topic.acl.publish] },
    createdAt: topic.createdAt,
    updatedAt: topic.updatedAt,
  })
  /** Admins see every topic; others see the ones they may subscribe to, and nothing of the rest. */
  const visible = (request: { principal: Parameters<HttpContext['acl']['forPrincipal']>[0] }, topic: AppTopic): boolean =>
    request.principal.role === 'admin' || ctx.acl.forPrincipal(request.principal).canSubscribe(`app/${topic.name}`)

  app.put<{ Params: NameParams, Body: PutBody }>('/topics/:name', {
    schema: {
      summary: 'Create an app topic or replace its ACL (admin)',
      description: 'Send `If-None-Match: *` to create only: 409 when the topic exists.',
      params: NameParams,
      body: PutBody,
      response: { 200: TopicView, 201: TopicView },
    },
  }, async (request, reply) => {
    requireRole(request.principal, 'admin')
    const existing = ctx.appTopics.getTopic(request.params.name)
    const onlyIfAbsent = request.headers['if-none-match'] === '*'
    const now = new Date().toISOString()
    const acl = request.body.acl ?? {}
    const topic: AppTopic = {
      name: request.params.name,
      acl: { subscribe: acl.subscribe ?? defaultReaders, publish: acl.publish ?? defaultWriters },
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    }
    if (!await ctx.appTopics.put(topic, { onlyIfAbsent })) throw new HeraldError('ALREADY_EXISTS', 'the topic exists')
    return await reply.code(existing === undefined ? 201 : 200).send(view(topic))
  })

  app.get('/topics', {
    schema: { summary: 'List app topics', response: { 200: Type.Object({ topics: Type.Array(TopicView) }) } },
  }, async (request) => ({ topics: ctx.appTopics.list().filter((topic) => visible(request, topic)).map(view) }))

  app.get<{ Params: NameParams }>('/topics/:name', {
    schema: { summary: 'Get an app topic', params: NameParams, response: { 200: TopicView } },
  }, async (request) => {
    const topic = ctx.appTopics.getTopic(request.params.name)
    if (topic === undefined || !visible(request, topic)) throw new HeraldError('NOT_FOUND', 'no such topic')
    return view(topic)
  })

  app.delete<{ Params: NameParams }>('/topics/:name', {
    schema: { summary: 'Delete an app topic (admin)', params: NameParams, response: { 204: NoContent } },
  }, async (request, reply) => {
    requireRole(request.principal, 'admin')
    if (!await ctx.appTopics.delete(request.params.name)) throw new HeraldError('NOT_FOUND', 'no such topic')
    return await reply.code(204).send()
  })
}
