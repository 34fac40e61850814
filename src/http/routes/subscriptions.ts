import type { FastifyInstance } from 'fastify'
import Type, { type Static } from 'typebox'
import { assertTopicFilter } from '../../acl/index.js'
import type { Principal } from '../../auth/index.js'
import { HeraldError } from '../../errors/index.js'
import type { Installation } from '../../store/installations.js'
import { installationOwner } from '../../store/known-principals.js'
import type { HttpContext } from '../context.js'
import { InstallationId, InstallationIdParams, findOwnInstallation } from './installation-access.js'
import { NoContent } from './no-content.js'
import { userInboxTopic } from '../../push/topics.js'

const TopicFilter = Type.String({ description: 'the topic filter; encode # as %23' })
const TopicParams = Type.Object({ id: InstallationId, '*': TopicFilter })
const MyTopicParams = Type.Object({ '*': TopicFilter })
const QosQuery = Type.Object({ qos: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(1)], { default: 1 })) }, { additionalProperties: false })
const Subscription = Type.Object({ topic: Type.String(), qos: Type.Integer() })

type TopicParams = Static<typeof TopicParams>
type MyTopicParams = Static<typeof MyTopicParams>
type QosQuery = Static<typeof QosQuery>

/**
 * Subscriptions of installations, kept in the same session store as MQTT
 * SUBSCRIBE: a device finds them when it connects with clean=false, and
 * push-only devices have them without ever connecting.
 */
export function registerSubscriptionRoutes (app: FastifyInstance, ctx: HttpContext): void {
  /** limits.maxSubscriptionsPerClient, as MQTT SUBSCRIBE applies it: a filter the installation holds already always passes. */
  async function assertRoomFor (installationId: string, filter: string): Promise<void> {
    const held = await ctx.broker.subscriptions(installationId)
    const max = ctx.config.limits.maxSubscriptionsPerClient
    if (held.length >= max && !held.some((sub) => sub.topic === filter)) {
      throw new HeraldError('TOO_MANY_SUBSCRIPTIONS', `installation ${installationId} has ${held.length} subscriptions (limits.maxSubscriptionsPerClient): remove one first`)
    }
  }

  /**
   * Checks the filter against the owner's ACL: the caller's token when the owner calls, else the
   * owner's newest token seen (groups, role and grants, deny filters too). An admin may subscribe
   * anyone to anything; delivery and the relay still apply the owner's ACL to every message.
   */
  async function assertMaySubscribe (caller: Principal, installation: Installation, filter: string): Promise<void> {
    assertTopicFilter(filter, ctx.config.limits)
    if (caller.role === 'admin') return
    const [known] = caller.sub === installation.owner ? [caller] : await ctx.principals.latest([installation.owner])
    if (!ctx.acl.forPrincipal(installationOwner(installation, known)).canSubscribe(filter)) throw new HeraldError('SUBSCRIBE_DENIED')
  }

  app.get<{ Params: InstallationIdParams }>('/installations/:id/subscriptions', {
    schema: { summary: 'List an installation’s subscriptions', params: InstallationIdParams, response: { 200: Type.Object({ subscriptions: Type.Array(Subscription) }) } },
  }, async (request) => {
    const installation = await findOwnInstallation(ctx, request.principal, request.params.id)
    return { subscriptions: await ctx.broker.subscriptions(installation.id) }
  })

  app.put<{ Params: TopicParams, Querystring: QosQuery }>('/installations/:id/subscriptions/*', {
    schema: { summary: 'Subscribe an installation to a topic', params: TopicParams, querystring: QosQuery, response: { 200: Subscription } },
  }, async (request) => {
    const installation = await findOwnInstallation(ctx, request.principal, request.params.id)
    const topic = request.params['*']
    const qos = request.query.qos ?? 1
    await assertMaySubscribe(request.principal, installation, topic)
    await assertRoomFor(installation.id, topic)
    await ctx.broker.subscribe(installation.id, topic, qos)
    return { topic, qos }
  })

  app.delete<{ Params: TopicParams }>('/installations/:id/subscriptions/*', {
    schema: { summary: 'Unsubscribe an installation from a topic', params: TopicParams, response: { 204: NoContent } },
  }, async (request, reply) => {
    const installation = await findOwnInstallation(ctx, request.principal, request.params.id)
    const topic = request.params['*']
    assertTopicFilter(topic, ctx.config.limits)
    // direct push reaches a device through this subscription; it goes with the installation only
    if (topic === userInboxTopic(installation.owner)) throw new HeraldError('NOT_AUTHORIZED', 'the inbox subscription cannot be removed')
    await ctx.broker.unsubscribe(installation.id, topic)
    return await reply.code(204).send()
  })

  app.put<{ Params: MyTopicParams, Querystring: QosQuery }>('/users/me/subscriptions/*', {
    schema: {
      summary: 'Subscribe every installation of the caller to a topic',
      params: MyTopicParams,
      querystring: QosQuery,
      response: { 200: Type.Object({ topic: Type.String(), qos: Type.Integer(), installations: Type.Array(Type.String()) }) },
    },
  }, async (request) => {
    const { principal } = request
    const topic = request.params['*']
    const qos = request.query.qos ?? 1
    assertTopicFilter(topic, ctx.config.limits)
    if (!ctx.acl.forPrincipal(principal).canSubscribe(topic)) throw new HeraldError('SUBSCRIBE_DENIED')
    const mine = principal.sub === null ? [] : await ctx.installations.listByOwner(principal.sub)
    // all or none: every installation must have room before any is subscribed
    for (const installation of mine) await assertRoomFor(installation.id, topic)
    for (const installation of mine) await ctx.broker.subscribe(installation.id, topic, qos)
    return { topic, qos, installations: mine.map((i) => i.id) }
  })
}
