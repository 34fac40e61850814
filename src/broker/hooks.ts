import type { Aedes, AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes'
import type { Logger } from 'pino'
import type { Acl } from '../acl/index.js'
import { assertPublishTopic, assertTopicFilter, type TopicLimits } from '../acl/topic-validation.js'
import { anonymousPrincipal, ownerKey, type Grants, type Principal, type TokenVerifier } from '../auth/index.js'
import type { HeraldConfig } from '../config/index.js'
import { HeraldError, isHeraldError } from '../errors/index.js'
import type { ClientOwnerStore } from '../store/client-owners.js'
import type { SessionStore } from '../store/session-store.js'
import type { ConnectLimiter } from './connect-limiter.js'
import { ConnectionRegistry, type Session } from './connection-registry.js'
import { Deadlines } from './deadlines.js'
import { sortableBrokerId } from './broker-id.js'
import { SubscriptionLimit } from './subscription-limit.js'
import { capQueuedQos, deliverOncePerMessage, type DeliveryLimits } from './delivery.js'
import { clientSubscriptions, disableCounterDedupe, identify, interceptPublish, remoteAddress, setBrokerId, slimParser, willOf, type ClosingConnection } from './aedes-internals.js'

/**
 * The only module that knows aedes' hook signatures; its internals are in
 * aedes-internals.ts. An aedes upgrade is a change to these two files.
 */

export interface HookDeps {
  readonly verifier: TokenVerifier
  readonly acl: Acl
  readonly anonymous: { readonly enabled: boolean, readonly grants: Grants }
  readonly limits: HeraldConfig['limits']
  /** what a PUBLISH the ACL refuses costs its client (`mqtt.deniedPublish`) */
  readonly deniedPublish: HeraldConfig['mqtt']['deniedPublish']
  readonly owners: ClientOwnerStore
  readonly sessions: SessionStore
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
interface ConnectRequest {
  readonly clientIdGiven: boolean
  readonly clean: boolean
  readonly willTopic: string | undefined
}

/** Token expiry is checked at this granularity: a connection is closed at most this long after its token expires. */
const EXPIRY_RESOLUTION_MS = 1000

export function installHooks (broker: Aedes, deps: HookDeps): ConnectionRegistry<Client> {
  const { verifier, acl, limits, owners, sessions, logger } = deps
  const registry = new ConnectionRegistry<Client>()
  // before listen(): queue keys then sort by the time messages were queued, across restarts (broker-id.ts)
  setBrokerId(broker, sortableBrokerId())
  const subscriptionLimit = new SubscriptionLimit<Client>(limits.maxSubscriptionsPerClient)
  const requests = new WeakMap<Client, ConnectRequest>()
  /**
   * Sessions of closed connections, for their wills: aedes 1.2 authorizes a
   * will only after the asynchronous unsubscribe of the closing client's
   * subscriptions (lib/client.js `close`), by which time the connection has
   * left the registry.
   */
  const departed = new WeakMap<Client, Session>()
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
  }

  // subscriptions from a live client are only stored when its ACL allows them;
  // server-side subscriptions (no live client) were checked by their caller
  sessions.policy.subscriptionGuard = (clientId, topic) => {
    const connection = registry.connectionByClientId(clientId)
    const session = connection === undefined ? undefined : registry.get(connection)
    return connection === undefined || session === undefined || (session.acl.canSubscribe(topic) && !subscriptionLimit.wasRefused(connection, topic))
  }
  sessions.policy.isConnected = (clientId) => registry.connectionByClientId(clientId) !== undefined

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
    const request = requests.get(client)
    if (request === undefined) throw new HeraldError('SERVER_UNAVAILABLE')
    requests.delete(client)
    const ip = remoteAddress(client) ?? 'unknown'
    if (!await deps.connectLimiter.tryConnect(ip)) throw new HeraldError('RATE_LIMITED')
    // [MQTT-3.1.3-8] a zero-length client id needs a clean session
    if (!request.clientIdGiven && !request.clean) throw new HeraldError('CLIENT_ID_INVALID', 'an empty client id needs clean session')
    if (client.id.length > limits.maxClientIdLength) throw new HeraldError('CLIENT_ID_INVALID', 'the client id is longer than limits.maxClientIdLength')

    const principal = principalOf(password)
    const owner = ownerKey(principal)
    const principalAcl = acl.forPrincipal(principal)
    if (request.willTopic !== undefined) assertPublishTopic(request.willTopic, limits)
    if (request.willTopic !== undefined && !principalAcl.canPublish(request.willTopic)) {
      throw new HeraldError('PUBLISH_DENIED', 'the will topic may not be published to')
    }

    const liveOwner = registry.byClientId(client.id)?.owner
    const claim = owners.get(client.id)
    if ((liveOwner !== undefined && liveOwner !== owner) || (claim !== undefined && claim.owner !== owner)) {
      throw new HeraldError('CLIENT_ID_TAKEN')
    }
    if (principal.kind === 'user' && registry.countForOwner(owner, client.id) >= limits.maxConnectionsPerUser) {
      throw new HeraldError('TOO_MANY_CONNECTIONS')
    }
    if (client.closed) return

    registry.add(client, { clientId: client.id, owner, acl: principalAcl, expiresAt: principal.expiresAt })
    if (principal.expiresAt !== null) expiries.add(client, principal.expiresAt)
    client.conn.on('close', forget)
    disableCounterDedupe(client)
    deliverOncePerMessage(client, deliveryLimits)
    slimParser(client)

    // a persistent session claims its client id until its owner discards it with clean=true;
    // an installation's id stays claimed until the installation is deleted
    if (!request.clean && claim === undefined) await owners.set(client.id, { owner, installation: false })
    if (request.clean && claim !== undefined && !claim.installation) await owners.delete(client.id)
  }

  function principalOf (password: Readonly<Buffer | undefined>): Principal {
    if (password !== undefined && password.length > 0) return verifier.verify(password.toString('utf8'))
    if (deps.anonymous.enabled) return anonymousPrincipal(deps.anonymous.grants)
    throw new HeraldError('TOKEN_MISSING', 'a JWT is required in the CONNECT password')
  }

  broker.authorizePublish = (client, packet, callback) => {
    // a null client is a will of a client gone before a restart; its topic was checked at CONNECT
    if (client === null) return callback(null)
    const will = willOf(client) === packet
    const session = registry.get(client) ?? (will ? departed.get(client) : undefined)
    if (session === undefined) return callback(new HeraldError('NOT_AUTHORIZED'))
    try {
      assertPublishTopic(packet.topic, limits)
    } catch (err) {
      return callback(err as HeraldError)
    }
    const refusal = !session.acl.canPublish(packet.topic)
      ? 'its topic may not be published to'
      : packet.retain && packet.payload.length > 0 && !sessions.mayRetain(packet.topic, packet.payload.length)
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
        handled.add(packet)
        return callback(null)
      }
      logger.info({ clientId: client.id, topic: packet.topic, reason: refusal }, 'publish denied; closing the connection')
      // [MQTT-3.3.5-2] MQTT 3.1.1 has no negative PUBACK: the connection is closed
      return callback(new HeraldError('PUBLISH_DENIED'))
    }
    if (packet.qos !== 1) return callback(null)
    publishBeforeAck(client, packet, callback)
  }

  /**
   * aedes 1.2 sends PUBACK and only then runs the publish pipeline that writes
   * the message to subscribers' queues (lib/handlers/publish.js), so a crash
   * in between loses an acknowledged message. authorizePublish runs before the
   * PUBACK: the pipeline runs here, and aedes' own publish of the packet after
   * the PUBACK is let through as done (see `broker.publish` below). The
   * message goes to connected subscribers at once; the PUBACK waits until it
   * is in LevelDB or all its recipients have acknowledged it
   * (SessionStore.safeToAck), and goes out in the order the PUBLISHes came
   * [MQTT-4.6.0-2]. A crash before the PUBACK loses nothing: the publisher
   * sends the message again.
   */
  function publishBeforeAck (client: Client, packet: PublishPacket, callback: (error: Error | null) => void): void {
    // aedes-packet keeps a brokerId and brokerCounter it is given: the store knows the message by them
    const identified = identify(broker, packet)
    sessions.expectAcknowledgement(identified)
    handled.add(packet)
    publish(packet, client, (err) => {
      const safe = sessions.safeToAck(identified)
      if (err != null) {
        callback(err)
        return
      }
      const previous = ackTails.get(client)
      if (safe === undefined && previous === undefined) {
        callback(null)
        return
      }
      const inOrder = Promise.all([previous, safe])
      ackTails.set(client, inOrder)
      inOrder.then(() => {
        // the last wait of this client is over: the next PUBACK need not wait for anything before it
        if (ackTails.get(client) === inOrder) ackTails.delete(client)
        callback(null)
      }, (failed: unknown) => callback(failed as Error))
    })
  }

  /**
   * Publishes aedes' handler must not run: already run by publishBeforeAck, or
   * dropped by the `drop` policy (acknowledged, delivered to nobody).
   */
  const handled = new WeakSet<PublishPacket>()
  /** Each client's last PUBACK wait: the next one waits for it too. */
  const ackTails = new WeakMap<Client, Promise<unknown>>()
  const publish = interceptPublish(broker, (packet) => handled.delete(packet))

  broker.authorizeSubscribe = (client, subscription: Subscription, callback) => {
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

  broker.on('publish', (_packet, client) => {
    if (client !== null) deps.observer?.messageIn()
  })

  broker.on('clientError', (client: Client, err: Error) => {
    logger.debug({ clientId: client.id, reason: err.message }, 'client error; connection closed')
  })
  broker.on('connectionError', (client: Client, err: Error) => {
    logger.debug({ ip: remoteAddress(client), reason: err.message }, 'connection error before CONNECT completed')
  })

  return registry
}

function isValidFilter (filter: string, limits: TopicLimits): boolean {
  try {
    assertTopicFilter(filter, limits)
    return true
  } catch {
    return false
  }
}
