import type { Logger } from 'pino'
import { createPushRelay, reviveDeadLetter, type DeadLetter, type PushSender, type RelayContent, type RelayJob, type RelayObserver } from '../../plugins/push-core/index.js'
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
  /** Relay jobs stored and not settled yet, every node's together (the admin overview). */
  outboxCount (): Promise<number>
  /** The jobs that ran out of attempts, for operators (the admin API): every node's. */
  readonly deadLetters: DeadLetters
  close (): Promise<void>
}

/** Relay dead letters as an operator sees them: inspect, send again once the cause is fixed, or drop. */
export interface DeadLetters {
  /** One page in job id order; pass `next` as `after` for the following one. */
  list (options: { readonly after?: string, readonly limit: number }): Promise<{ letters: DeadLetter[], next: string | null }>
  get (id: string): Promise<DeadLetter | undefined>
  /** Back into the outbox with no attempts made and its ttl counted from now (reviveDeadLetter); undefined when there is no such dead letter. */
  replay (id: string): Promise<RelayJob | undefined>
  /** Replays every dead letter; resolves how many. */
  replayAll (): Promise<number>
  /** Removes these dead letters (every one when `ids` is undefined); resolves how many there were. */
  purge (ids?: readonly string[]): Promise<number>
  count (): Promise<number>
}

/** Dead letters replayed per page of `replayAll`. */
const REPLAY_PAGE = 500

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
  /** The clock a replayed dead letter's new expiry counts from (tests). */
  readonly now?: () => number
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

  const store = deps.store
  const now = deps.now ?? Date.now
  const deadLetters: DeadLetters = {
    list: async (options) => await store.listDeadLetters(options),
    get: async (id) => await store.getDeadLetter(id),
    replay: async (id) => await store.replayDeadLetter(id, (letter) => reviveDeadLetter(letter, now())),
    async replayAll () {
      let replayed = 0
      let after: string | undefined
      for (;;) {
        const { letters, next } = await store.listDeadLetters({ ...(after !== undefined && { after }), limit: REPLAY_PAGE })
        for (const letter of letters) if (await deadLetters.replay(letter.id) !== undefined) replayed++
        if (next === null) return replayed
        after = next
      }
    },
    purge: async (ids) => await store.deleteDeadLetters(ids),
    count: async () => await store.deadLetterCount(),
  }

  return {
    get depth () { return relay.depth },
    deadLetters,
    outboxCount: async () => await store.count(),
    async relayPush (clientIds, content, ttlSec) {
      await relay.routed(clientIds, content, ttlSec)
    },
    routingHook: (subs, message) => {
      // who queues: everyone but push-only installations (the same array when there is none, as nearly always)
      const queued = subs.some((sub) => installations.isPushOnly(sub.clientId)) ? subs.filter((sub) => !installations.isPushOnly(sub.clientId)) : subs
      // most subscribers are no installation with a push token: nothing to wait for, and no relay
      // content to build (a UTF-8 decode); this runs for every QoS 1 message into a persistent session
      const relayable = subs.some((sub) => installations.hasPushToken(sub.clientId))
      if (!relayable || broker.relayedAlready(message)) return queued
      return relay.routed(subs.map((sub) => sub.clientId), rawContent(message)).then(() => queued)
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
