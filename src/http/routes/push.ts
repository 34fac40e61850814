import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import Type from 'typebox'
import { assertPublishTopic } from '../../acl/index.js'
import type { Principal } from '../../auth/index.js'
import { HeraldError } from '../../errors/index.js'
import { buildEnvelope, checkPushContent, PushRequest, type PushTarget } from '../../push/message.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'
import { assertFitsInPacket } from '../packet-size.js'
import { installationTopic, userInboxTopic } from '../../push/topics.js'
import { findOwnInstallation } from './installation-access.js'
import type { RelayContent } from '../../../plugins/push-core/index.js'

interface ResolvedTarget {
  /** The topic the envelope is delivered on (and names in its `topic` field). */
  readonly topic: string
  /** Set for `to.installation`: the one recipient, and whether it takes MQTT deliveries. */
  readonly installation?: { readonly id: string, readonly mqtt: boolean }
}

/** `POST /v1/push`: push to a topic, a user (direct push) or one installation. */
export function registerPushRoutes (app: FastifyInstance, ctx: HttpContext): void {
  app.post<{ Body: PushRequest }>('/push', {
    schema: {
      summary: 'Send a push message',
      body: PushRequest,
      response: { 202: Type.Object({ id: Type.String() }) },
    },
  }, async (request, reply) => {
    const push = request.body
    const problem = checkPushContent(push)
    if (problem !== null) throw new HeraldError(problem.code, problem.message)
    const target = await resolveTarget(push.to, request.principal, ctx)

    const id = randomUUID()
    const envelope = buildEnvelope({ id, now: new Date(), sender: request.principal.sub, topic: target.topic, request: push })

    const overMqtt = push.mqtt?.enabled !== false && (target.installation === undefined || target.installation.mqtt)
    const message = { topic: target.topic, payload: Buffer.from(JSON.stringify(envelope)), qos: push.mqtt?.qos ?? 1, retain: false }
    // checked before the relay: a push refused here goes nowhere
    if (overMqtt) assertFitsInPacket(message.topic, message.payload.length, message.qos, ctx.config.limits.maxPacketBytes)

    // relay first: the outbox holds the jobs for offline devices before anything is sent anywhere
    const recipients = target.installation !== undefined ? [target.installation.id] : await ctx.broker.persistentSubscribers(target.topic)
    await ctx.relay.relayPush(recipients, relayContent(id, target.topic, push), push.ttl)

    if (push.mqtt?.enabled !== false) {
      if (target.installation === undefined) await ctx.broker.publish(message, { relayed: true })
      else if (target.installation.mqtt) await ctx.broker.deliverTo(target.installation.id, message)
    }
    ctx.metrics.messagesIn.inc({ transport: 'http' })
    return await reply.code(202).send({ id })
  })
}

async function resolveTarget (to: PushTarget, principal: Principal, ctx: HttpContext): Promise<ResolvedTarget> {
  if ('topic' in to) {
    assertPublishTopic(to.topic, ctx.config.limits)
    if (!ctx.acl.forPrincipal(principal).canPublish(to.topic)) throw new HeraldError('PUBLISH_DENIED')
    return { topic: to.topic }
  }
  if ('user' in to) {
    requireRole(principal, 'service', 'admin')
    return { topic: mayPublish(userInboxTopic(to.user), principal, ctx) }
  }
  const installation = await findOwnInstallation(ctx, principal, to.installation)
  return { topic: mayPublish(installationTopic(installation), principal, ctx), installation: { id: installation.id, mqtt: installation.mqtt } }
}

/** A direct or installation push publishes on the caller's behalf: the caller's deny filters apply as to any publish. */
function mayPublish (topic: string, principal: Principal, ctx: HttpContext): string {
  if (!ctx.acl.forPrincipal(principal).canPublish(topic)) throw new HeraldError('PUBLISH_DENIED')
  return topic
}

function relayContent (messageId: string, topic: string, push: PushRequest): RelayContent {
  return {
    kind: 'push',
    messageId,
    topic,
    notification: push.notification ?? null,
    data: push.data ?? {},
    ...(push.fcm !== undefined && { fcm: push.fcm }),
    ...(push.apns !== undefined && { apns: push.apns }),
  }
}
