import type { FastifyInstance, FastifyRequest } from 'fastify'
import Type, { type Static } from 'typebox'
import type { DeadLetter } from '../../../plugins/push-core/index.js'
import type { ConnectedClient } from '../../broker/broker-port.js'
import { HeraldError } from '../../errors/index.js'
import { requireRole } from '../auth.js'
import type { HttpContext } from '../context.js'
import { registerAdminBucketRoutes } from './admin-buckets.js'
import { NoContent } from './no-content.js'

/**
 * The operator's endpoints under `/v1/admin` (role `admin` only): who is
 * connected and what a session holds, disconnecting a client, the relay's
 * dead letters, an online backup, and an overview for the console. The CLI
 * (`herald clients`, `disconnect`, `queue`, `dead-letters`, `backup`) and the
 * web console call these; a test push is `POST /v1/push` with an admin token.
 */

const ClientIdParams = Type.Object({ clientId: Type.String({ minLength: 1, maxLength: 1024, description: 'the MQTT client id (percent-encoded)' }) })
const DeadLetterParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, description: 'the relay job id' }) })

const ConnectionView = Type.Object({
  clientId: Type.String(),
  user: Type.Union([Type.String(), Type.Null()], { description: 'the `sub` of its token; null for an anonymous connection' }),
  node: Type.Union([Type.String(), Type.Null()], { description: 'the cluster node holding it; null without a cluster' }),
  connectedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'null for a connection another cluster node holds' }),
  address: Type.Union([Type.String(), Type.Null()], { description: 'the peer address; null for a connection another cluster node holds' }),
  transport: Type.Union([Type.Literal('tcp'), Type.Literal('tls'), Type.Literal('websocket'), Type.Null()], { description: 'MQTT over TCP, TLS or WebSocket (ws or wss); null for a connection another cluster node holds' }),
})

const ClientsQuery = Type.Object({
  user: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'only this user\'s connections' })),
  search: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'only client ids that contain this text' })),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'the `next` of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
}, { additionalProperties: false })
const ClientsPage = Type.Object({
  clients: Type.Array(ConnectionView, { description: 'in client id order' }),
  total: Type.Integer({ description: 'connections matching the filter, every page together' }),
  next: Type.Union([Type.String(), Type.Null()], { description: 'pass as `after` for the next page; null on the last' }),
})

const ClientView = Type.Object({
  clientId: Type.String(),
  connected: Type.Boolean({ description: 'an open connection on any node' }),
  connection: Type.Union([ConnectionView, Type.Null()]),
  owner: Type.Union([Type.String(), Type.Null()], { description: 'the user the client id belongs to (a persistent session or an installation claims it); null when unclaimed' }),
  installation: Type.Boolean({ description: 'the client id is an installation\'s' }),
  session: Type.Object({
    subscriptions: Type.Array(Type.Object({ topic: Type.String(), qos: Type.Integer() })),
    queuedMessages: Type.Integer({ description: 'QoS 1/2 messages stored for it and not acknowledged (waiting, or in flight to a connected device)' }),
    will: Type.Boolean({ description: 'a stored will' }),
  }),
})

const RelayContentView = Type.Object({
  kind: Type.Union([Type.Literal('push'), Type.Literal('raw')], { description: 'push: from POST /v1/push; raw: any other QoS 1 message' }),
  messageId: Type.String(),
  topic: Type.String(),
}, { additionalProperties: true, description: 'what the relay sends: notification, data and fcm/apns options of a push; the text payload of a raw message' })
const DeadLetterSummary = Type.Object({
  id: Type.String(),
  installationId: Type.String(),
  reason: Type.String({ description: 'the provider\'s last answer, or why the job failed' }),
  attempts: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  deadAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  messageId: Type.String(),
  topic: Type.String(),
})
const DeadLetterView = Type.Object({ ...DeadLetterSummary.properties, content: RelayContentView })
const DeadLettersQuery = Type.Object({
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'the `next` of the previous page' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
}, { additionalProperties: false })
const DeadLettersPage = Type.Object({
  deadLetters: Type.Array(DeadLetterSummary, { description: 'in job id order' }),
  total: Type.Integer({ description: 'dead letters stored, every node\'s' }),
  next: Type.Union([Type.String(), Type.Null()], { description: 'pass as `after` for the next page; null on the last' }),
})
const Replayed = Type.Object({ replayed: Type.Integer({ description: 'dead letters moved back into the outbox' }) })
const Purged = Type.Object({ purged: Type.Integer({ description: 'dead letters removed' }) })

const BackupBody = Type.Object({
  dir: Type.String({ minLength: 1, maxLength: 4096, description: 'an absolute path on the broker\'s machine: a new or empty directory' }),
}, { additionalProperties: false })
const BackupView = Type.Object({
  dir: Type.String(),
  entries: Type.Integer({ description: 'keys copied' }),
  bytes: Type.Integer({ description: 'bytes of keys and values copied' }),
  startedAt: Type.String({ format: 'date-time' }),
  durationMs: Type.Integer(),
})

const Overview = Type.Object({
  version: Type.String(),
  node: Type.Union([Type.String(), Type.Null()], { description: 'the node that answered, in a cluster' }),
  uptimeSec: Type.Integer({ description: 'of the node that answered' }),
  clients: Type.Object({ connected: Type.Integer({ description: 'open MQTT connections, every node\'s' }) }),
  queues: Type.Object({
    sessions: Type.Integer({ description: 'persistent sessions with queued messages' }),
    messages: Type.Integer({ description: 'queued messages, every session\'s (counted at most every 15 s)' }),
  }),
  relay: Type.Object({
    outbox: Type.Integer({ description: 'relay jobs not settled yet, every node\'s' }),
    deadLetters: Type.Integer(),
  }),
  counters: Type.Object({
    messagesIn: Type.Integer({ description: 'messages published into this node since it started (MQTT and HTTP)' }),
    messagesOut: Type.Integer({ description: 'messages this node delivered to MQTT clients since it started' }),
    relaySent: Type.Record(Type.String(), Type.Integer(), { description: 'notifications providers accepted from this node, by provider' }),
    relayFailed: Type.Record(Type.String(), Type.Integer(), { description: 'relay jobs this node gave up (dropped or dead-lettered), by provider' }),
  }, { description: 'this node\'s counters since it started, as in /metrics: poll twice for rates' }),
})

type ClientIdParams = Static<typeof ClientIdParams>
type DeadLetterParams = Static<typeof DeadLetterParams>
type ClientsQuery = Static<typeof ClientsQuery>
type DeadLettersQuery = Static<typeof DeadLettersQuery>
type BackupBody = Static<typeof BackupBody>

const iso = (ms: number): string => new Date(ms).toISOString()

function connectionView (client: ConnectedClient): Static<typeof ConnectionView> {
  return { ...client, connectedAt: client.connectedAt === null ? null : iso(client.connectedAt), transport: client.transport as Static<typeof ConnectionView>['transport'] }
}

function deadLetterSummary (letter: DeadLetter): Static<typeof DeadLetterSummary> {
  return {
    id: letter.id,
    installationId: letter.installationId,
    reason: letter.reason,
    attempts: letter.attempts,
    createdAt: iso(letter.createdAt),
    deadAt: iso(letter.deadAt),
    expiresAt: iso(letter.expiresAt),
    messageId: letter.content.messageId,
    topic: letter.content.topic,
  }
}

/** Before the body and query are validated: a caller who is not admin learns nothing, not even what the route expects. */
const adminOnly = { preValidation: async (request: FastifyRequest) => { requireRole(request.principal, 'admin') } }

export function registerAdminRoutes (app: FastifyInstance, ctx: HttpContext): void {
  registerClientRoutes(app, ctx)
  registerDeadLetterRoutes(app, ctx)
  registerStoreRoutes(app, ctx, Date.now())
  registerAdminBucketRoutes(app, ctx)
}

/** Connected clients (every node's in a cluster): list, one client's session, disconnect. */
function registerClientRoutes (app: FastifyInstance, ctx: HttpContext): void {
  app.get<{ Querystring: ClientsQuery }>('/admin/clients', {
    ...adminOnly,
    schema: {
      summary: 'List connected MQTT clients (admin)',
      description: 'Every node\'s connections in a cluster (the cluster presence); `user` filters by the token\'s `sub`, `search` by a part of the client id.',
      querystring: ClientsQuery,
      response: { 200: ClientsPage },
    },
  }, async (request) => {
    const { user, search, after, limit = 100 } = request.query
    const all = ctx.broker.connectedClients(user === undefined ? {} : { user })
      .filter((client) => search === undefined || client.clientId.includes(search)).sort((a, b) => a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0)
    const rest = after === undefined ? all : all.filter((client) => client.clientId > after)
    const page = rest.slice(0, limit)
    return { clients: page.map(connectionView), total: all.length, next: rest.length > limit ? page[page.length - 1]?.clientId ?? null : null }
  })

  app.get<{ Params: ClientIdParams }>('/admin/clients/:clientId', {
    ...adminOnly,
    schema: {
      summary: 'Get a client id: its connection, owner and stored session (admin)',
      description: '404 when the client id has no connection, claim or stored session.',
      params: ClientIdParams,
      response: { 200: ClientView },
    },
  }, async (request) => {
    const { clientId } = request.params
    const connection = ctx.broker.connectedClient(clientId)
    const claim = ctx.clientIds.get(clientId)
    const [subscriptions, state, queued] = await Promise.all([
      ctx.broker.subscriptions(clientId),
      ctx.broker.sessionState(clientId),
      ctx.storage.queues.depth(clientId),
    ])
    if (connection === undefined && claim === undefined && subscriptions.length === 0 && !state.will && queued === 0) {
      throw new HeraldError('NOT_FOUND', 'no connection, claim or stored session for this client id')
    }
    return {
      clientId,
      connected: connection !== undefined,
      connection: connection === undefined ? null : connectionView(connection),
      owner: claim === undefined ? null : claim.owner.startsWith('user:') ? claim.owner.slice('user:'.length) : claim.owner,
      installation: claim?.installation === true,
      session: { subscriptions, queuedMessages: queued, will: state.will },
    }
  })

  app.delete<{ Params: ClientIdParams }>('/admin/clients/:clientId/connection', {
    ...adminOnly,
    schema: {
      summary: 'Disconnect a client (admin)',
      description: 'Closes its connection on whichever node holds it and keeps its stored session (subscriptions, queue); its will is published. The device may connect again at once: revoke its token or delete its installation to keep it out. 404 when it is not connected.',
      params: ClientIdParams,
      response: { 204: NoContent },
    },
  }, async (request, reply) => {
    if (!await ctx.broker.disconnect(request.params.clientId)) throw new HeraldError('NOT_FOUND', 'the client id is not connected')
    request.log.info({ clientId: request.params.clientId, by: request.principal.sub }, 'client disconnected by an admin')
    return await reply.code(204).send()
  })
}

/** Relay dead letters: list, inspect, replay, purge. */
function registerDeadLetterRoutes (app: FastifyInstance, ctx: HttpContext): void {
  app.get<{ Querystring: DeadLettersQuery }>('/admin/dead-letters', {
    ...adminOnly,
    schema: { summary: 'List relay dead letters (admin)', description: 'Relay jobs that ran out of attempts (`push.maxAttempts`), every node\'s, a page at a time.', querystring: DeadLettersQuery, response: { 200: DeadLettersPage } },
  }, async (request) => {
    const { after, limit = 100 } = request.query
    const [{ letters, next }, total] = await Promise.all([ctx.relay.deadLetters.list({ ...(after !== undefined && { after }), limit }), ctx.relay.deadLetters.count()])
    return { deadLetters: letters.map(deadLetterSummary), total, next }
  })

  app.get<{ Params: DeadLetterParams }>('/admin/dead-letters/:id', {
    ...adminOnly,
    schema: { summary: 'Get a relay dead letter with what it would send (admin)', params: DeadLetterParams, response: { 200: DeadLetterView } },
  }, async (request) => {
    const letter = await ctx.relay.deadLetters.get(request.params.id)
    if (letter === undefined) throw new HeraldError('NOT_FOUND', 'no such dead letter')
    return { ...deadLetterSummary(letter), content: letter.content }
  })

  app.post<{ Params: DeadLetterParams }>('/admin/dead-letters/:id/replay', {
    ...adminOnly,
    schema: {
      summary: 'Replay a relay dead letter (admin)',
      description: 'Moves it back into the relay outbox with no attempts made and its original ttl counted from now; it is sent to the installation\'s push token at send time.',
      params: DeadLetterParams,
      response: { 202: Replayed },
    },
  }, async (request, reply) => {
    if (await ctx.relay.deadLetters.replay(request.params.id) === undefined) throw new HeraldError('NOT_FOUND', 'no such dead letter')
    return await reply.code(202).send({ replayed: 1 })
  })

  app.post('/admin/dead-letters/replay', {
    ...adminOnly,
    schema: { summary: 'Replay every relay dead letter (admin)', response: { 202: Replayed } },
  }, async (_request, reply) => await reply.code(202).send({ replayed: await ctx.relay.deadLetters.replayAll() }))

  app.delete<{ Params: DeadLetterParams }>('/admin/dead-letters/:id', {
    ...adminOnly,
    schema: { summary: 'Purge a relay dead letter (admin)', params: DeadLetterParams, response: { 204: NoContent } },
  }, async (request, reply) => {
    if (await ctx.relay.deadLetters.purge([request.params.id]) === 0) throw new HeraldError('NOT_FOUND', 'no such dead letter')
    return await reply.code(204).send()
  })

  app.delete('/admin/dead-letters', {
    ...adminOnly,
    schema: { summary: 'Purge every relay dead letter (admin)', response: { 200: Purged } },
  }, async () => ({ purged: await ctx.relay.deadLetters.purge() }))
}

/** The store's backup, and the overview's counts since `started`. */
function registerStoreRoutes (app: FastifyInstance, ctx: HttpContext, started: number): void {
  app.post<{ Body: BackupBody }>('/admin/backup', {
    ...adminOnly,
    schema: {
      summary: 'Back up the store while running (admin)',
      description: 'Copies a consistent snapshot of the LevelDB into `dir` on the broker\'s machine; the result is a data directory (README "Backup and restore"). In a cluster: 501 NOT_SUPPORTED (back up Redis with its own tools).',
      body: BackupBody,
      response: { 201: BackupView },
    },
  }, async (request, reply) => {
    const backup = ctx.storage.backup
    if (backup === undefined) throw new HeraldError('NOT_SUPPORTED', 'cluster mode keeps the store in Redis: back it up with Redis\' own tools (RDB snapshot or AOF), not through Herald')
    const result = await backup(request.body.dir)
    request.log.info({ dir: result.dir, entries: result.entries, durationMs: result.durationMs, by: request.principal.sub }, 'store backed up')
    return await reply.code(201).send(result)
  })

  app.get('/admin/overview', {
    ...adminOnly,
    schema: { summary: 'Counts for an operator\'s overview (admin)', response: { 200: Overview } },
  }, async () => {
    const [queues, outbox, deadLetters, counters] = await Promise.all([
      ctx.storage.queues.totals(),
      ctx.relay.outboxCount(),
      ctx.relay.deadLetters.count(),
      ctx.metrics.counters(),
    ])
    return {
      version: ctx.version,
      node: ctx.node ?? null,
      uptimeSec: Math.floor((Date.now() - started) / 1000),
      clients: { connected: ctx.broker.connectedClients().length },
      queues,
      relay: { outbox, deadLetters },
      counters,
    }
  })
}
