import type { Logger } from 'pino'
import { createPushRelay, type PushSender, type RelayContent, type RelayObserver } from '../../plugins/push-core/index.js'
import type { Acl, PrincipalAcl } from '../acl/index.js'
import type { BrokerPort } from '../broker/broker-port.js'
import type { MessageRouter, RoutedMessage } from '../broker/routed-message.js'
import type { HeraldConfig } from '../config/index.js'
import type { InstallationStore } from '../store/installations.js'
import { installationOwner, type PrincipalDirectory } from '../store/known-principals.js'
import type { RelayStore } from '../../plugins/push-core/index.js'

/**
 * Where Herald meets the relay plugin. Messages reach it two ways:
 * - `POST /v1/push` relays with the full push content (notification, data,
 *   per-network options) to the offline recipients it computed, then
 *   publishes with `relayed` so the routing hook does not relay it a second
 *   time (BrokerPort.relayedAlready);
 * - every other QoS>0 message, through the session store's routing hook,
 *   is relayed as a raw data message to offline installations it reached.
 * Push-only installations keep no MQTT queue either way.
 */
export interface RelayGateway {
  relayPush (clientIds: Iterable<string>, content: RelayContent, ttlSec: number | undefined): Promise<void>
  readonly routingHook: MessageRouter
  start (): Promise<void>
  idle (): Promise<void>
  /** The outbox is empty, retries included (tests). */
  drain (): Promise<void>
  /** Relay jobs this node holds, not settled yet (in a cluster, each node counts its own). */
  readonly depth: number
  close (): Promise<void>
}

export interface GatewayDeps {
  readonly config: HeraldConfig
  readonly logger: Logger
  readonly installations: InstallationStore
  /** Whose ACL an offline device's messages are checked against: its owner's newest token. */
  readonly principals: PrincipalDirectory
  readonly acl: Acl
  readonly broker: BrokerPort
  readonly store: RelayStore
  readonly senders: readonly PushSender[]
  readonly observer?: RelayObserver
}

export function createRelayGateway (deps: GatewayDeps): RelayGateway {
  const { installations, broker } = deps
  const relay = createPushRelay({
    logger: deps.logger.child({ component: 'relay' }),
    store: deps.store,
    senders: deps.senders,
    tokens: {
      tokensOf: async (ids) => (await installations.getMany(ids)).map((installation) => installation?.pushToken ?? null),
      prune: async (id, token) => await installations.prunePushToken(id, token.token),
    },
    recipients: {
      hasPushToken: (id) => installations.hasPushToken(id),
      isPushOnly: (id) => installations.isPushOnly(id),
      isConnected: (id) => broker.isConnected(id),
      async mayReceive (ids, topic) {
        // the ACL MQTT delivery applies, with the newest token of each owner in place of a connection's
        const found = await installations.getMany(ids)
        const owners = [...new Set(found.flatMap((installation) => installation === undefined ? [] : [installation.owner]))]
        const known = new Map(zip(owners, await deps.principals.latest(owners)))
        const acls = new Map<string, PrincipalAcl>()
        return found.map((installation) => {
          if (installation === undefined) return false
          let acl = acls.get(installation.owner)
          if (acl === undefined) acls.set(installation.owner, acl = deps.acl.forPrincipal(installationOwner(installation, known.get(installation.owner))))
          return acl.canReceive(topic)
        })
      },
    },
    settings: deps.config.push,
    ...(deps.observer !== undefined && { observer: deps.observer }),
  })

  return {
    get depth () { return relay.depth },
    async relayPush (clientIds, content, ttlSec) {
      await relay.routed(clientIds, content, ttlSec)
    },
    routingHook: async (subs, message) => {
      // most subscribers are no installation with a push token: build the relay content (a UTF-8 decode) only when one is
      const relayable = subs.some((sub) => installations.hasPushToken(sub.clientId))
      if (relayable && !broker.relayedAlready(message)) await relay.routed(subs.map((sub) => sub.clientId), rawContent(message))
      return subs.filter((sub) => !installations.isPushOnly(sub.clientId))
    },
    start: async () => await relay.start(),
    idle: async () => await relay.idle(),
    drain: async () => await relay.drain(),
    close: async () => await relay.close(),
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function zip<A, B> (a: readonly A[], b: readonly B[]): Array<[A, B]> {
  return a.map((item, i) => [item, b[i] as B])
}

/** A raw message as the relay carries it: the payload only when it is text. */
function rawContent (message: RoutedMessage): RelayContent {
  let payload: string | undefined
  try {
    payload = utf8.decode(message.payload)
  } catch {
    payload = undefined
  }
  return {
    kind: 'raw',
    messageId: `${message.brokerId}-${message.brokerCounter}`,
    topic: message.topic,
    ...(payload !== undefined && { payload }),
  }
}
