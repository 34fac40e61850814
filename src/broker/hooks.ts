import type { Aedes, AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes'
import type { Logger } from 'pino'
import type { Acl } from '../acl/index.js'
import { assertPublishTopic, assertTopicFilter, type TopicLimits } from '../acl/topic-validation.js'
import type { Grants, TokenVerifier } from '../auth/index.js'
import type { HeraldConfig } from '../config/index.js'
import { HeraldError, isHeraldError } from '../errors/index.js'
import type { ClusterPresence } from '../cluster/presence.js'
import type { ClientOwnerStore } from '../store/client-owners.js'
import type { SessionStorage } from '../store/session-storage.js'
import type { ConnectLimiter } from './connect-limiter.js'
import { admitConnection, recordClaim, type ConnectPolicyDeps, type ConnectRequest } from './connect-policy.js'
import { ClusterRegistration } from './cluster-registration.js'
import { ConnectionRegistry, type Session } from './connection-registry.js'
import { Deadlines } from './deadlines.js'
import { sortableBrokerId } from './broker-id.js'
import { SubscribeOrder } from './subscribe-order.js'
import { SubscriptionLimit } from './subscription-limit.js'
import { capQueuedQos, deliverOncePerMessage, releaseAfterConnack, type DeliveryLimits } from './delivery.js'
import { orderPubacks, type PubackOrder } from './puback-order.js'
import { clientSubscriptions, disableCounterDedupe, remoteAddress, setBrokerId, slimParser, willOf, type ClosingConnection } from './aedes-internals.js'

/**
 * The only module that knows aedes' hook signatures; its internals are in
 * aedes-internals.ts. An aedes upgrade is a change to these two files.
 * What a CONNECT may do is decided in connect-policy.ts, when a PUBACK may go
 * in puback-order.ts.
 */

export interface HookDeps {
  readonly verifier: TokenVerifier
  readonly acl: Acl
  readonly anonymous: { readonly enabled: boolean, readonly grants: Grants }
  readonly limits: HeraldConfig['limits']
  /** what a PUBLISH the ACL refuses costs its client (`mqtt.deniedPublish`) */
  readonly deniedPublish: HeraldConfig['mqtt']['deniedPublish']
  readonly owners: ClientOwnerStore
  readonly sessions: SessionStorage
  /** who is connected to which cluster node; undefined: one process, the registry knows */
  readonly presence?: ClusterPresence
  /** why no CONNECT can be admitted now (connect-policy.ts), e.g. a cluster node that lost Redis */
  readonly unavailable?: () => HeraldError | null
  readonly connectLimiter: ConnectLimiter
  readonly logger: Logger
  readonly observer?: BrokerObserver
}

/** Counts what passes through the hooks (metrics), without the hooks knowing about Prometheus. */
export interface BrokerObserver {
  messageIn (): void
  messageOut (): void
  connectRefused (code: string): void
  publishDenied (): void
  /** a message not written to a connection past `limits.maxOutgoingBytes`/`maxOutgoingMessages` */
  slowClientDropped (qos: number): void
  /** a connection closed for falling behind (`behind`) or not reading for `limits.slowClientTimeoutMs` (`stalled`) */
  slowClientClosed (reason: 'behind' | 'stalled'): void
}

/** What the CONNECT packet said, kept from preConnect until authenticate. */
type ConnectPacketFacts = Pick<ConnectRequest, 'clientIdGiven' | 'clean' | 'willTopic'>

/** What the hooks share. */
interface Hooks {
  readonly broker: Aedes
  readonly deps: HookDeps
  readonly registry: ConnectionRegistry<Client>
  readonly subscriptionLimit: SubscriptionLimit<Client>
  /** a connection's PUBLISH after the SUBSCRIBEs it sent before it */
  readonly subscribeOrder: SubscribeOrder<Client>
  /**
   * Sessions of closed connections, for their wills: aedes 1.2 authorizes a
   * will only after the asynchronous unsubscribe of the closing client's
   * subscriptions (lib/client.js `close`), by which time the connection has
   * left the registry.
   */
  readonly departed: WeakMap<Client, Session>
  readonly pubacks: PubackOrder
  /** this node's connections in the cluster's presence; undefined: one process */
  readonly cluster: ClusterRegistration | undefined
}

/** Token expiry is checked at this granularity: a connection is closed at most this long after its token expires. */
const EXPIRY_RESOLUTION_MS = 1000

export function installHooks (broker: Aedes, deps: HookDeps): ConnectionRegistry<Client> {
  const { limits, sessions } = deps
  const registry = new ConnectionRegistry<Client>()
  // before listen(): queue keys then sort by the time messages were queued, across restarts (broker-id.ts)
  setBrokerId(broker, sortableBrokerId())
  const subscriptionLimit = new SubscriptionLimit<Client>(limits.maxSubscriptionsPerClient)
  const cluster = deps.presence === undefined ? undefined : new ClusterRegistration(deps.presence, deps.logger, () => broker.id)
  const hooks: Hooks = { broker, deps, registry, subscriptionLimit, subscribeOrder: new SubscribeOrder(), departed: new WeakMap(), pubacks: orderPubacks(broker, sessions), cluster }

  // subscriptions from a live client are only stored when its ACL allows them;
  // server-side subscriptions (no live client) were checked by their caller
  sessions.policy.subscriptionGuard = (clientId, topic) => {
    const connection = registry.connectionByClientId(clientId)
    const session = connection === undefined ? undefined : registry.get(connection)
    return connection === undefined || session === undefined || (session.acl.canSubscribe(topic) && !subscriptionLimit.wasRefused(connection, topic))
  }
  sessions.policy.isConnected = (clientId) => registry.connectionByClientId(clientId) !== undefined

  installConnect(hooks)
  broker.authorizePublish = (client, packet, callback) => {
    // a will is checked at once: it depends on no subscription, and its connection is closing
    if (client === null || willOf(client) === packet) return authorizePublish(hooks, client, packet, callback)
    hooks.subscribeOrder.after(client, () => authorizePublish(hooks, client, packet, callback))
  }
  installSubscribeAndForward(hooks)
  installEvents(hooks)
  return registry
}

/** preConnect and authenticate: the connect policy, then the connection joins the registry. */
function installConnect (hooks: Hooks): void {
  const { broker, deps, registry } = hooks
  const { logger } = deps
  const requests = new WeakMap<Client, ConnectPacketFacts>()
  const lifecycle = connectionLifecycle(hooks)
  const { presence } = deps
  const { cluster } = hooks
  const policy: ConnectPolicyDeps = {
    ...deps,
    // in a cluster, the connections of every node count
    connections: {
      ownerOf: (clientId) => registry.byClientId(clientId)?.owner ?? presence?.ownerOf(clientId),
      countForOwner: (owner, clientId) => presence?.countForOwner(owner, clientId) ?? registry.countForOwner(owner, clientId),
    },
  }

  broker.preConnect = (client: Client, packet: ConnectPacket, callback) => {
    requests.set(client, { clientIdGiven: packet.clientId.length > 0, clean: packet.clean !== false, willTopic: packet.will?.topic })
    callback(null, true)
  }

  broker.authenticate = (client, username, password, callback) => {
    authenticate(client, password).then(
      () => callback(null, true),
      (err: unknown) => {
        const error = isHeraldError(err) ? err : new HeraldError('SERVER_UNAVAILABLE', undefined, { cause: err })
        logger.info({ clientId: client.id, ip: remoteAddress(client), code: error.code, reason: error.message }, 'connection refused')
        deps.observer?.connectRefused(error.code)
        if (!isHeraldError(err)) logger.error({ err }, 'authentication failed unexpectedly')
        const refusal = new Error(error.message) as AuthenticateError
        refusal.returnCode = error.connack as AuthenticateError['returnCode']
        callback(refusal, false)
      })
  }

  async function authenticate (client: Client, password: Readonly<Buffer | undefined>): Promise<void> {
    const facts = requests.get(client)
    if (facts === undefined) throw new HeraldError('SERVER_UNAVAILABLE')
    requests.delete(client)
    const request: ConnectRequest = { ...facts, clientId: client.id, password, ip: remoteAddress(client) ?? 'unknown' }
    const admission = await admitConnection(request, policy)
    if (client.closed) return
    // atomic across nodes: of two connections racing for one client id under different owners, one gets it
    if (cluster !== undefined && await cluster.register(client, admission.owner) !== undefined) throw new HeraldError('CLIENT_ID_TAKEN')
    if (client.closed) {
      cluster?.unregister(client)
      return
    }
    lifecycle.register(client, { clientId: client.id, owner: admission.owner, acl: admission.acl, expiresAt: admission.expiresAt })
    await recordClaim(request, admission, deps.owners)
  }
}

/** A connection from its admission to its close: token expiry, delivery bounds, aedes' per-connection patches. */
function connectionLifecycle (hooks: Hooks): { register (client: Client, session: Session): void } {
  const { deps, registry, departed } = hooks
  const { logger, limits } = deps
  const expiries = new Deadlines<Client>(EXPIRY_RESOLUTION_MS, (client) => {
    logger.info({ clientId: client.id }, 'token expired; closing the connection')
    client.close()
  })
  const deliveryLimits: DeliveryLimits = {
    maxOutgoingBytes: limits.maxOutgoingBytes,
    maxOutgoingMessages: limits.maxOutgoingMessages,
    onDropped: (qos) => deps.observer?.slowClientDropped(qos),
    onBehind: (client) => {
      if (client.closed) return
      logger.info({ clientId: client.id }, 'slow client: messages for its persistent session wait in its queue; closing the connection')
      deps.observer?.slowClientClosed('behind')
      client.close()
    },
  }

  /** The 'close' listener of every connection, one function for all (aedes sets `conn.client`). */
  function forget (this: ClosingConnection): void {
    const client = this.client
    if (client === undefined) return
    // aedes' drainTimeout (limits.slowClientTimeoutMs) destroys the connection with this error; its
    // 'error' event comes after aedes has stopped listening, so it is only seen here
    if (this.errored?.message === 'drain timeout') {
      logger.info({ clientId: client.id }, 'slow client: nothing read for limits.slowClientTimeoutMs; connection closed')
      deps.observer?.slowClientClosed('stalled')
    }
    const session = registry.get(client)
    if (session === undefined) return
    if (session.expiresAt !== null) expiries.delete(client, session.expiresAt)
    departed.set(client, session)
    registry.remove(client)
    hooks.cluster?.unregister(client)
  }

  return {
    register (client, session) {
      registry.add(client, session)
      if (session.expiresAt !== null) expiries.add(client, session.expiresAt)
      client.conn.on('close', forget)
      disableCounterDedupe(client)
      deliverOncePerMessage(client, deliveryLimits)
      slimParser(client)
    },
  }
}

function authorizePublish (hooks: Hooks, client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
  const { deps, registry, departed } = hooks
  const { logger } = deps
  // a null client is a will of a client gone before a restart; its topic was checked at CONNECT
  if (client === null) return callback(null)
  const will = willOf(client) === packet
  const session = registry.get(client) ?? (will ? departed.get(client) : undefined)
  if (session === undefined) return callback(new HeraldError('NOT_AUTHORIZED'))
  try {
    assertPublishTopic(packet.topic, deps.limits)
  } catch (err) {
    return callback(err as HeraldError)
  }
  const refusal = !session.acl.canPublish(packet.topic)
    ? 'its topic may not be published to'
    : packet.retain && packet.payload.length > 0 && !deps.sessions.mayRetain(packet.topic, packet.payload.length)
      ? 'a retained-message bound (limits.maxRetained*) is reached'
      : undefined
  if (refusal !== undefined) {
    deps.observer?.publishDenied()
    if (will) {
      logger.info({ clientId: client.id, topic: packet.topic, reason: refusal }, 'will refused')
      return callback(new HeraldError('PUBLISH_DENIED'))
    }
    if (deps.deniedPublish === 'drop') {
      logger.info({ clientId: client.id, topic: packet.topic, reason: refusal }, 'publish denied; acknowledged and dropped')
      hooks.pubacks.drop(client, packet, callback)
      return
    }
    logger.info({ clientId: client.id, topic: packet.topic, reason: refusal }, 'publish denied; closing the connection')
    // [MQTT-3.3.5-2] MQTT 3.1.1 has no negative PUBACK: the connection is closed
    return callback(new HeraldError('PUBLISH_DENIED'))
  }
  if (packet.qos !== 1) return callback(null)
  hooks.pubacks.publishBeforeAck(client, packet, callback)
}

function installSubscribeAndForward (hooks: Hooks): void {
  const { broker, deps, registry, subscriptionLimit } = hooks
  const { logger, limits } = deps
  broker.authorizeSubscribe = (client, subscription: Subscription, callback) => {
    // a SUBSCRIBE packet (a resumed session's restore runs before the client is connected)
    if (client.connected) hooks.subscribeOrder.started(client, subscription)
    const session = registry.get(client)
    const allowed = session !== undefined &&
      isValidFilter(subscription.topic, limits) &&
      session.acl.canSubscribe(subscription.topic)
    const held = clientSubscriptions(client)
    const admitted = allowed && subscriptionLimit.admit(client, held, subscription.topic)
    if (allowed && !admitted) logger.debug({ clientId: client.id, topic: subscription.topic }, 'subscription refused: limits.maxSubscriptionsPerClient')
    else if (!allowed) logger.debug({ clientId: client.id, topic: subscription.topic }, 'subscription denied')
    // answered on the next tick: every filter of the SUBSCRIBE is decided before aedes stores the
    // first, with the whole list, and the guard above must know which ones the limit refused
    // (a null subscription is SUBACK 0x80 for this filter; the others go on)
    process.nextTick(callback, null, admitted ? subscription : null)
  }

  // Checked on every delivery, so ACL changes (app topics, deny rules) apply to live sessions
  // and to messages queued before the change.
  broker.authorizeForward = (client, packet) => {
    const session = registry.get(client)
    if (session === undefined || !session.acl.canReceive(packet.topic)) return null
    capQueuedQos(client, packet)
    deps.observer?.messageOut()
    return packet
  }
}

function installEvents ({ broker, deps, subscriptionLimit, subscribeOrder }: Hooks): void {
  const { logger } = deps
  // aedes reports a failure of its own background work as an 'error' event on the broker: its
  // sweep for the wills of dead cluster nodes, every four heartbeats, fails while Redis is lost.
  // Without a listener that event ended the process; the sweep runs again at its next interval.
  const events: NodeJS.EventEmitter = broker
  events.on('error', (err: Error) => { logger.warn({ err }, 'broker background work failed (the store is unreachable?); it runs again later') })
  // a SUBSCRIBE (or a session's restore) is done: what it granted is in the connection's subscriptions now
  broker.on('subscribe', (subscriptions, client) => {
    subscriptionLimit.settle(client)
    subscribeOrder.finished(client, subscriptions)
  })
  broker.on('clientReady', (client) => { subscriptionLimit.settle(client) })
  // messages that came for a resumed session before its CONNACK go out after it, before its queue
  broker.on('connackSent', (_connack, client) => { releaseAfterConnack(client) })
  broker.on('publish', (_packet, client) => {
    if (client !== null) deps.observer?.messageIn()
  })
  broker.on('clientError', (client: Client, err: Error) => {
    logger.debug({ clientId: client.id, reason: err.message }, 'client error; connection closed')
  })
  broker.on('connectionError', (client: Client, err: Error) => {
    logger.debug({ ip: remoteAddress(client), reason: err.message }, 'connection error before CONNECT completed')
  })
}

function isValidFilter (filter: string, limits: TopicLimits): boolean {
  try {
    assertTopicFilter(filter, limits)
    return true
  } catch {
    return false
  }
}
