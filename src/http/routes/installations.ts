import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import Type, { type Static } from 'typebox'
import { TopicLevelId, userOwnerKey } from '../../auth/index.js'
import { HeraldError } from '../../errors/index.js'
import { userInboxTopic } from '../../push/topics.js'
import type { Installation, PushToken } from '../../store/installations.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'
import { InstallationIdParams, findOwnInstallation } from './installation-access.js'
import { NoContent } from './no-content.js'

const PushTokenBody = Type.Object({
  provider: Type.Union([Type.Literal('fcm'), Type.Literal('apns')]),
  token: Type.String({ minLength: 1, maxLength: 4096 }),
  environment: Type.Optional(Type.Union([Type.Literal('production'), Type.Literal('development')], {
    description: 'APNs: the app build\'s environment. Left out, pushes follow push.apns.production, read at send time',
  })),
  apnsTopic: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
}, { additionalProperties: false })

const CreateBody = Type.Object({
  user: Type.Optional(TopicLevelId),
  mqtt: Type.Optional(Type.Boolean({ default: true, description: 'false: a push-only device that never connects over MQTT' })),
  pushToken: Type.Optional(PushTokenBody),
}, { additionalProperties: false })

const PatchBody = Type.Object({
  mqtt: Type.Optional(Type.Boolean()),
  pushToken: Type.Optional(Type.Union([PushTokenBody, Type.Null()])),
}, { additionalProperties: false })

const InstallationView = Type.Object({
  id: Type.String(),
  user: Type.String(),
  mqtt: Type.Boolean(),
  connected: Type.Boolean(),
  pushToken: Type.Union([Type.Object({
    provider: Type.String(),
    environment: Type.Union([Type.String(), Type.Null()], { description: 'as registered; null when the device named none' }),
    effectiveEnvironment: Type.Union([Type.String(), Type.Null()], {
      description: 'APNs: where pushes go now (the registered environment, else push.apns.production); null for FCM or without push.apns',
    }),
    apnsTopic: Type.Union([Type.String(), Type.Null()]),
    tokenSuffix: Type.String({ description: 'last characters of the token; the token itself is never returned' }),
  }), Type.Null()]),
  createdAt: Type.String(),
  updatedAt: Type.String(),
})

const MqttConnectInfo = Type.Object({
  clientId: Type.String(),
  host: Type.String(),
  ports: Type.Object({
    mqtt: Type.Integer(),
    mqtts: Type.Union([Type.Integer(), Type.Null()]),
    ws: Type.Integer(),
    wss: Type.Union([Type.Integer(), Type.Null()]),
  }),
  wsPath: Type.String(),
  inboxTopic: Type.String(),
})

const ListQuery = Type.Object({ user: Type.Optional(TopicLevelId) }, { additionalProperties: false })

type CreateBody = Static<typeof CreateBody>
type ListQuery = Static<typeof ListQuery>
type PatchBody = Static<typeof PatchBody>

/** Installations: devices with an owner, an MQTT client id, an inbox subscription and an optional push token. */
export function registerInstallationRoutes (app: FastifyInstance, ctx: HttpContext): void {
  const view = installationView(ctx)
  registerCreateInstallation(app, ctx, view)
  registerInstallationItemRoutes(app, ctx, view)
}

type View = (installation: Installation) => Static<typeof InstallationView>

/** What the API shows of an installation: never the push token itself. */
function installationView (ctx: HttpContext): View {
  // the APNs sender applies the same default at send time (plugins/push-apns/sender.ts)
  const apnsDefault = ctx.config.push.apns === undefined ? null : ctx.config.push.apns.production ? 'production' : 'development'
  const effectiveEnvironment = (token: PushToken): string | null => token.provider === 'apns' ? token.environment ?? apnsDefault : null
  return (installation) => ({
    id: installation.id,
    user: installation.owner,
    mqtt: installation.mqtt,
    connected: ctx.broker.isConnected(installation.id),
    pushToken: installation.pushToken === null
      ? null
      : {
          provider: installation.pushToken.provider,
          environment: installation.pushToken.environment,
          effectiveEnvironment: effectiveEnvironment(installation.pushToken),
          apnsTopic: installation.pushToken.apnsTopic,
          tokenSuffix: installation.pushToken.token.slice(-6),
        },
    createdAt: installation.createdAt,
    updatedAt: installation.updatedAt,
  })
}

/** `POST /installations`: register a device and tell it how to connect over MQTT. */
function registerCreateInstallation (app: FastifyInstance, ctx: HttpContext, view: View): void {
  app.post<{ Body: CreateBody }>('/installations', {
    // every field is optional, so an empty request is a valid registration
    preValidation: async (request) => { request.body ??= {} },
    schema: {
      summary: 'Register a device',
      body: CreateBody,
      response: { 201: Type.Object({ installationId: Type.String(), mqtt: MqttConnectInfo, installation: InstallationView }) },
    },
  }, async (request, reply) => {
    const { principal } = request
    const owner = request.body.user ?? principal.sub
    if (request.body.user !== undefined && request.body.user !== principal.sub) requireRole(principal, 'service', 'admin')
    if (owner === null) throw new HeraldError('NOT_AUTHORIZED')

    const now = new Date().toISOString()
    const installation: Installation = {
      id: randomUUID(),
      owner,
      ownerGroups: principal.sub === owner ? principal.groups : [],
      mqtt: request.body.mqtt ?? true,
      pushToken: toPushToken(request.body.pushToken),
      createdAt: now,
      updatedAt: now,
    }
    await storeInstallation(ctx, installation)
    // the directory keeps installation owners' principals only, and this call's token was seen before
    // its user owned one: seen again now, it is what the relay decides by until a newer one comes
    if (principal.sub === owner) ctx.principals.seen(principal)

    const ports = ctx.ports()
    return await reply.code(201).send({
      installationId: installation.id,
      mqtt: {
        clientId: installation.id,
        host: ctx.config.http.publicHost ?? request.hostname.replace(/:\d+$/, ''),
        ports,
        wsPath: ctx.config.http.wsPath,
        inboxTopic: userInboxTopic(owner),
      },
      installation: view(installation),
    })
  })
}

/** Claims the client id, stores the installation and subscribes it to its owner's inbox. */
async function storeInstallation (ctx: HttpContext, installation: Installation): Promise<void> {
  // the installation id is the device's MQTT client id, claimed for its owner from now on
  await ctx.clientIds.set(installation.id, { owner: userOwnerKey(installation.owner), installation: true })
  try {
    // limits.maxInstallationsPerUser: every installation is a session, a claim and a copy of each message to its user
    await ctx.installations.put(installation, { maxPerOwner: ctx.config.limits.maxInstallationsPerUser })
  } catch (err) {
    await ctx.clientIds.delete(installation.id)
    throw err
  }
  // stored in the session of the client id, so a device connecting later with clean=false finds it
  await ctx.broker.subscribe(installation.id, userInboxTopic(installation.owner), 1)
}

/** `GET /installations` and `/installations/:id`: the caller's own installations. */
function registerInstallationItemRoutes (app: FastifyInstance, ctx: HttpContext, view: View): void {
  app.get<{ Querystring: ListQuery }>('/installations', {
    schema: {
      summary: 'List the caller’s installations, or a user’s (service, admin)',
      description: '`?user=` lists that user\'s installations: services and admins only (the admin console looks a user\'s devices up this way).',
      querystring: ListQuery,
      response: { 200: Type.Object({ installations: Type.Array(InstallationView) }) },
    },
  }, async (request) => {
    const { principal } = request
    const user = request.query.user ?? principal.sub
    if (request.query.user !== undefined && request.query.user !== principal.sub) requireRole(principal, 'service', 'admin')
    const found = user === null ? [] : await ctx.installations.listByOwner(user)
    return { installations: found.map(view) }
  })

  app.get<{ Params: InstallationIdParams }>('/installations/:id', {
    schema: { summary: 'Get one installation', params: InstallationIdParams, response: { 200: InstallationView } },
  }, async (request) => view(await findOwnInstallation(ctx, request.principal, request.params.id)))

  app.patch<{ Params: InstallationIdParams, Body: PatchBody }>('/installations/:id', {
    schema: { summary: 'Replace or remove the push token; switch MQTT on or off', params: InstallationIdParams, body: PatchBody, response: { 200: InstallationView } },
  }, async (request) => {
    const installation = await findOwnInstallation(ctx, request.principal, request.params.id)
    const updated: Installation = {
      ...installation,
      ...(request.body.mqtt !== undefined && { mqtt: request.body.mqtt }),
      ...(request.body.pushToken !== undefined && { pushToken: toPushToken(request.body.pushToken ?? undefined) }),
      ...refreshedGroups(request, installation),
      updatedAt: new Date().toISOString(),
    }
    await ctx.installations.put(updated)
    return view(updated)
  })

  app.delete<{ Params: InstallationIdParams }>('/installations/:id', {
    schema: { summary: 'Delete an installation and its MQTT session', params: InstallationIdParams, response: { 204: NoContent } },
  }, async (request, reply) => {
    const installation = await findOwnInstallation(ctx, request.principal, request.params.id)
    await ctx.broker.deleteSession(installation.id)
    await ctx.installations.delete(installation.id)
    await ctx.clientIds.delete(installation.id)
    return await reply.code(204).send()
  })
}

function toPushToken (body: Static<typeof PushTokenBody> | undefined): PushToken | null {
  if (body === undefined) return null
  return { provider: body.provider, token: body.token, environment: body.environment ?? null, apnsTopic: body.apnsTopic ?? null }
}

/** The owner's current token tells its current groups; keep them for subscriptions made on its behalf. */
function refreshedGroups (request: FastifyRequest, installation: Installation): Partial<Installation> {
  return request.principal.sub === installation.owner ? { ownerGroups: request.principal.groups } : {}
}
