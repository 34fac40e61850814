import type { FastifyInstance } from 'fastify'
import Type, { type Static } from 'typebox'
import { assertPublishTopic } from '../../acl/index.js'
import { HeraldError } from '../../errors/index.js'
import type { HttpContext } from '../context.js'
import { assertFitsInPacket } from '../packet-size.js'

const PublishBody = Type.Object({
  // an empty topic is TOPIC_INVALID (assertPublishTopic), not a schema error
  topic: Type.String(),
  payload: Type.Unknown({ description: 'a string for utf8/base64; any JSON value for json' }),
  encoding: Type.Optional(Type.Union([Type.Literal('utf8'), Type.Literal('base64'), Type.Literal('json')], { default: 'utf8' })),
  qos: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(1)], { default: 0 })),
  retain: Type.Optional(Type.Boolean({ default: false })),
}, { additionalProperties: false, required: ['topic', 'payload'] })

type PublishBody = Static<typeof PublishBody>

/** `POST /v1/publish`: a raw MQTT publish under the caller's ACL. */
export function registerPublishRoutes (app: FastifyInstance, ctx: HttpContext): void {
  app.post<{ Body: PublishBody }>('/publish', {
    schema: {
      summary: 'Publish a raw payload to a topic',
      body: PublishBody,
      response: { 202: Type.Object({ topic: Type.String(), bytes: Type.Integer(), qos: Type.Integer() }) },
    },
  }, async (request, reply) => {
    const { topic, encoding = 'utf8', qos = 0, retain = false } = request.body
    assertPublishTopic(topic, ctx.config.limits)
    const payload = encodePayload(request.body.payload, encoding)
    // the whole packet, not the payload alone: a payload of exactly maxPacketBytes made a larger packet
    assertFitsInPacket(topic, payload.length, qos, ctx.config.limits.maxPacketBytes)
    if (!ctx.acl.forPrincipal(request.principal).canPublish(topic)) throw new HeraldError('PUBLISH_DENIED')
    await ctx.broker.publish({ topic, payload, qos, retain })
    ctx.metrics.messagesIn.inc({ transport: 'http' })
    return await reply.code(202).send({ topic, bytes: payload.length, qos })
  })
}

function encodePayload (payload: unknown, encoding: 'utf8' | 'base64' | 'json'): Buffer {
  if (encoding === 'json') return Buffer.from(JSON.stringify(payload))
  if (typeof payload !== 'string') throw new HeraldError('INVALID_REQUEST', `body/payload must be a string with encoding ${encoding}`)
  if (encoding === 'utf8') return Buffer.from(payload, 'utf8')
  // Buffer.from silently skips bad characters; a payload must round-trip exactly
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload) || payload.length % 4 !== 0) {
    throw new HeraldError('INVALID_REQUEST', 'body/payload is not valid base64')
  }
  return Buffer.from(payload, 'base64')
}
