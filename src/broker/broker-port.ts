import type { Aedes, Client } from 'aedes'
import { newPacket } from './aedes-internals.js'
import type { RoutedMessage } from './routed-message.js'
import type { ClusterPresence } from '../cluster/presence.js'
import type { RemoteClients } from '../cluster/remote-clients.js'
import type { SessionState, SessionStorage } from '../store/session-storage.js'
import { createConnectedClients } from './connected-clients.js'
import { createConnectionActions } from './connection-actions.js'
import type { ConnectionRegistry } from './connection-registry.js'

/** A message the server side (HTTP API, plugins) sends into the broker. */
export interface OutboundMessage {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1
  readonly retain: boolean
}

export interface PublishOptions {
  /**
   * The relay has had this message already (`POST /v1/push` relays it with
   * the full push content first): the relay skips it on its way into the
   * offline queues (`relayedAlready`).
   */
  readonly relayed?: boolean
}

export interface SubscriptionInfo {
  readonly topic: string
  readonly qos: number
}

/** An open MQTT connection, as the admin API lists it. */
export interface ConnectedClient {
  readonly clientId: string
  /** The user id of its token; null for an anonymous connection. */
  readonly user: string | null
  /** The cluster node holding the connection; null on a single node. */
  readonly node: string | null
  /** When it connected (ms since the epoch); null for a connection another node holds. */
  readonly connectedAt: number | null
  /** The peer's address; null for a connection another node holds. */
  readonly address: string | null
  /** `tcp`, `tls` or `websocket`; null for a connection another node holds. */
  readonly transport: string | null
}

/**
 * What the rest of Herald may ask of the broker, without touching aedes:
 * callers check the ACL first; these operations do not.
 */
export interface BrokerPort {
  /** Routes a message to every subscriber; resolves once QoS1 copies are in the offline queues. */
  publish (message: OutboundMessage, options?: PublishOptions): Promise<void>
  /** Whether this message was published with `relayed`; asked while it is routed, before publish() resolves. */
  relayedAlready (message: RoutedMessage): boolean
  /**
   * Sends a message to one client id only: now when connected (to any node of
   * a cluster), from its queue when it reconnects.
   *
   * In a cluster, this and subscribe, unsubscribe and deleteSession act on a
   * connection held by another node through that node (cluster/remote-clients.ts),
   * and reject with NODE_UNREACHABLE when it does not answer.
   */
  deliverTo (clientId: string, message: OutboundMessage): Promise<void>
  /** Adds a subscription to a client id's session, live or stored. */
  subscribe (clientId: string, topic: string, qos: 0 | 1): Promise<void>
  unsubscribe (clientId: string, topic: string): Promise<void>
  subscriptions (clientId: string): Promise<SubscriptionInfo[]>
  /** What is stored for a client id: subscriptions, a will, possibly queued messages. */
  sessionState (clientId: string): Promise<SessionState>
  /** Closes a live connection with this client id (on any node) and removes its stored session. */
  deleteSession (clientId: string): Promise<void>
  /**
   * Closes the client id's live connection (on any node) and keeps its stored
   * session; its will is published, as for any connection that ends without
   * DISCONNECT. Resolves false when no node holds a connection of it.
   */
  disconnect (clientId: string): Promise<boolean>
  /** Whether the client id has an open connection: to any node of a cluster. */
  isConnected (clientId: string): boolean
  /** The open connections, of every node of a cluster; those of `user` only when given. */
  connectedClients (filter?: { readonly user?: string }): ConnectedClient[]
  /** The client id's open connection, on any node; undefined when none. */
  connectedClient (clientId: string): ConnectedClient | undefined
  /** Client ids whose persistent sessions hold a QoS>0 subscription matching `topic`. */
  persistentSubscribers (topic: string): Promise<string[]>
}

/** This node in a cluster: who is connected where, and how to reach the others' connections. */
export interface BrokerCluster {
  readonly presence: ClusterPresence
  readonly remote?: RemoteClients
}

export function createBrokerPort (aedes: Aedes, sessions: SessionStorage, registry: ConnectionRegistry<Client>, cluster?: BrokerCluster): BrokerPort {
  const presence = cluster?.presence
  const remote = cluster?.remote
  const live = (clientId: string): Client | undefined => {
    const client = registry.connectionByClientId(clientId)
    return client !== undefined && !client.closed ? client : undefined
  }
  const onConnection = createConnectionActions(aedes, live, presence, remote)
  const connected = createConnectedClients(registry, live, presence, remote?.node)

  /** brokerCounter → brokerId of the messages published with `relayed` whose publish has not finished */
  const relayed = new Map<number, string>()
  const publish = async (packet: Parameters<Aedes['publish']>[0]): Promise<void> => await new Promise<void>((resolve, reject) => {
    aedes.publish(packet, (err) => {
      if (err) reject(err)
      else resolve()
    })
  })

  return {
    async publish (message, options) {
      if (options?.relayed !== true) {
        await publish({ cmd: 'publish', topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, dup: false })
        return
      }
      // identified now (aedes-packet keeps the identity it is given), so the routing can recognise it
      const packet = newPacket(aedes, message)
      relayed.set(packet.brokerCounter, packet.brokerId)
      try {
        await publish(packet)
      } finally {
        relayed.delete(packet.brokerCounter)
      }
    },

    relayedAlready: (message) => relayed.get(message.brokerCounter) === message.brokerId,

    async deliverTo (clientId, message) {
      const { topic, payload, qos, retain } = message
      if (await onConnection(clientId, { op: 'deliverTo', args: { topic, payload, qos, retain } })) return
      if (message.qos > 0) await sessions.outgoingEnqueue({ clientId }, newPacket(aedes, message))
    },

    async subscribe (clientId, topic, qos) {
      if (await onConnection(clientId, { op: 'subscribe', args: { topic, qos } })) return
      await sessions.addSubscriptions({ id: clientId }, [{ topic, qos }])
    },

    async unsubscribe (clientId, topic) {
      await onConnection(clientId, { op: 'unsubscribe', args: { topic } })
      await sessions.removeSubscriptions({ id: clientId }, [topic])
    },

    async subscriptions (clientId) {
      const stored = await sessions.subscriptionsByClient({ id: clientId })
      return stored.map(({ topic, qos }) => ({ topic, qos }))
    },

    sessionState: async (clientId) => await sessions.sessionState(clientId),

    async deleteSession (clientId) {
      await onConnection(clientId, { op: 'deleteSession', args: {} })
      await sessions.deleteSession(clientId)
    },

    async disconnect (clientId) {
      return await onConnection(clientId, { op: 'disconnect', args: {} })
    },

    isConnected: (clientId) => live(clientId) !== undefined || presence?.isConnected(clientId) === true,

    connectedClients: (filter) => connected.list(filter),

    connectedClient: (clientId) => connected.get(clientId),

    async persistentSubscribers (topic) {
      const subs = await sessions.subscriptionsByTopic(topic)
      return subs.map((sub) => sub.clientId)
    },
  }
}
