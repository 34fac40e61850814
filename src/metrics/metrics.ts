import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { RelayObserver } from '../../plugins/push-core/index.js'

/** Herald's Prometheus metrics, served at `/metrics`. One registry per server, so tests can run several. */
export interface Metrics {
  readonly registry: Registry
  readonly messagesIn: Counter<'transport'>
  readonly messagesOut: Counter
  /** MQTT messages in and out, counted per message here and added to messagesIn and messagesOut when those are read */
  readonly mqttMessages: { readonly in: Tally, readonly out: Tally }
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  /** Seconds from a request's arrival to its answer, by route pattern (fastify's routeOptions.url, never the raw URL). */
  readonly httpRequestDuration: Histogram<'method' | 'route' | 'status'>
  /** MQTT connections authenticated and admitted. */
  readonly mqttConnects: Counter
  /** MQTT connections ended after they were admitted, by reason (connection-events.ts). */
  readonly mqttDisconnects: Counter<'reason'>
  /** MQTT CONNECTs refused, by reason: the error code (README "Error codes"; the CONNACK follows from it). */
  readonly mqttConnectsRefused: Counter<'reason'>
  /** New HTTP connections closed at once: their address had `http.maxConnectionsPerIp` open. */
  readonly httpConnectionsRefused: Counter
  /** HTTP connections closed because a request's headers or body took longer than its timeout. */
  readonly httpRequestTimeouts: Counter
  /** HTTP requests refused unverified: their address had too many failed authentications. */
  readonly httpAuthRateLimited: Counter
  readonly authFailures: Counter<'transport' | 'code'>
  /** Connections closed as they were accepted: the open-files limit left no room (transport/connection-budget.ts). */
  readonly connectionsRefused: Counter<'listener' | 'reason'>
  readonly publishDenied: Counter
  /** MQTT connections closed before their CONNECT was read (transport/pre-auth.ts), by reason. */
  readonly preAuthRefused: Counter<'reason'>
  readonly slowClientDropped: Counter<'qos'>
  readonly slowClientClosed: Counter<'reason'>
  /** Messages dropped from persistent sessions' queues past `limits.maxQueuedMessagesPerSession` (the oldest ones). */
  readonly queueDropped: Counter
  /** Persistent sessions deleted past `limits.sessionExpirySec` (`session`), or an installation's queue (`queue`). */
  readonly sessionsExpired: Counter<'kind'>
  /** Garbage collections after a storm of new connections (memory/storm-reclaim.ts), by the pause each took. */
  readonly memoryReclaimPause: Histogram
  readonly relay: RelayObserver
  /** This node's counters the admin overview shows, as /metrics would (messages, relay outcomes by provider). */
  counters (): Promise<NodeCounters>
}

export interface NodeCounters {
  readonly messagesIn: number
  readonly messagesOut: number
  /** notifications providers accepted, by provider */
  readonly relaySent: Record<string, number>
  /** relay jobs given up (dropped or dead-lettered), by provider */
  readonly relayFailed: Record<string, number>
}

/** Values read at scrape time. */
export interface Gauges {
  connectedClients (): number
  relayOutboxDepth (): number
  /** 1 while the store writes, 0 while it refuses writes (full disk, I/O error) */
  storageWritable (): number
  /** the process's open file descriptors and its limit; null where unknown */
  openFiles (): { readonly limit: number | null, readonly open: number | null }
  /** MQTT connections whose CONNECT has not fully arrived yet */
  pendingConnects (): number
  /** persistent sessions with queued messages and the messages (store/queue-inspector.ts: counted at most every 15 s) */
  queueTotals (): Promise<{ readonly sessions: number, readonly messages: number }>
  /** relay dead letters stored */
  deadLetters (): Promise<number>
}

/**
 * A count kept as a plain number and handed to its counter when the counter
 * is read (a scrape, the overview): prom-client hashes an inc()'s labels on
 * every call, and the MQTT counts grow by one per message in and per delivery.
 */
export class Tally {
  #pending = 0

  add (): void {
    this.#pending++
  }

  /** Hands what was counted since the last read to `inc`, if anything. */
  addTo (inc: (n: number) => void): void {
    if (this.#pending === 0) return
    const n = this.#pending
    this.#pending = 0
    inc(n)
  }
}

/** `node`: every series carries this node's id (cluster mode: one scrape target per node or worker). */
export function createMetrics (gauges: Gauges, labels: { readonly node?: string } = {}): Metrics {
  const registry = new Registry()
  if (labels.node !== undefined) registry.setDefaultLabels({ node: labels.node })
  const registers = [registry]
  collectDefaultMetrics({ register: registry, prefix: 'herald_' })
  registerGauges(gauges, registers)

  const mqttMessages = { in: new Tally(), out: new Tally() }
  const messagesIn = new Counter({
    name: 'herald_messages_in_total',
    help: 'Messages published into the broker, by where they came from',
    labelNames: ['transport'],
    registers,
    collect () { mqttMessages.in.addTo((n) => this.inc({ transport: 'mqtt' }, n)) },
  })
  const messagesOut = new Counter({
    name: 'herald_mqtt_messages_out_total',
    help: 'Messages delivered to MQTT clients (live or from their queue)',
    registers,
    collect () { mqttMessages.out.addTo((n) => this.inc(n)) },
  })
  const sent = new Counter({ name: 'herald_relay_sent_total', help: 'Notifications accepted by a provider', labelNames: ['provider'], registers })
  const retried = new Counter({ name: 'herald_relay_retried_total', help: 'Relay attempts that failed transiently and were scheduled again', labelNames: ['provider'], registers })
  const pruned = new Counter({ name: 'herald_relay_pruned_total', help: 'Push tokens removed after a provider rejected them', labelNames: ['provider'], registers })
  const dropped = new Counter({ name: 'herald_relay_dropped_total', help: 'Relay jobs given up, by reason', labelNames: ['provider', 'reason'], registers })
  const dead = new Counter({ name: 'herald_relay_dead_lettered_total', help: 'Relay jobs that ran out of attempts', labelNames: ['provider'], registers })
  const latency = new Histogram({ name: 'herald_relay_provider_latency_seconds', help: 'Time a provider took to answer a send', labelNames: ['provider'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers })

  return {
    registry,
    messagesIn,
    messagesOut,
    mqttMessages,
    httpRequests: new Counter({ name: 'herald_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers }),
    httpRequestDuration: new Histogram({
      name: 'herald_http_request_duration_seconds',
      help: 'Time from an HTTP request\'s arrival to its answer, by method, route pattern (e.g. /v1/installations/:id; "unmatched" for no route) and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    mqttConnects: new Counter({ name: 'herald_mqtt_connects_total', help: 'MQTT connections authenticated and admitted', registers }),
    mqttDisconnects: new Counter({
      name: 'herald_mqtt_disconnects_total',
      help: 'Admitted MQTT connections that ended, by reason: disconnect (the client sent DISCONNECT), keepalive (no packet within 1.5 keepalive periods), error (protocol or socket error), closed (the socket closed without DISCONNECT, or the server closed it: takeover, token expiry, slow client, an admin, shutdown)',
      labelNames: ['reason'],
      registers,
    }),
    mqttConnectsRefused: new Counter({ name: 'herald_mqtt_connects_refused_total', help: 'MQTT CONNECTs refused, by reason: the error code (TOKEN_INVALID, CLIENT_ID_TAKEN, TOO_MANY_CONNECTIONS, RATE_LIMITED, …; README "Error codes")', labelNames: ['reason'], registers }),
    httpConnectionsRefused: new Counter({ name: 'herald_http_connections_refused_total', help: 'HTTP connections closed at accept: their IP had http.maxConnectionsPerIp open', registers }),
    httpRequestTimeouts: new Counter({ name: 'herald_http_request_timeouts_total', help: 'HTTP connections closed because a request took longer than http.headersTimeoutMs or http.requestTimeoutMs to arrive', registers }),
    httpAuthRateLimited: new Counter({ name: 'herald_http_auth_rate_limited_total', help: 'HTTP requests answered 429 without verifying their token: their IP exceeded http.authFailureLimit', registers }),
    authFailures: new Counter({ name: 'herald_auth_failures_total', help: 'Refused credentials, by transport and error code', labelNames: ['transport', 'code'], registers }),
    connectionsRefused: new Counter({ name: 'herald_connections_refused_total', help: 'Connections closed as they were accepted, by listener (mqtt: TCP and TLS; http: HTTP, WebSocket) and reason (open_files: the open-files limit left no room)', labelNames: ['listener', 'reason'], registers }),
    slowClientDropped: new Counter({ name: 'herald_mqtt_slow_client_dropped_total', help: 'Messages not written to a connection past limits.maxOutgoingBytes or maxOutgoingMessages (QoS 0, clean sessions)', labelNames: ['qos'], registers }),
    slowClientClosed: new Counter({ name: 'herald_mqtt_slow_client_disconnects_total', help: 'Connections closed for falling behind (persistent session past the outgoing limits) or reading nothing for limits.slowClientTimeoutMs', labelNames: ['reason'], registers }),
    preAuthRefused: new Counter({
      name: 'herald_mqtt_preauth_refused_total',
      help: 'MQTT connections closed before their CONNECT was read, by reason: pending_per_ip (limits.maxPendingConnectsPerIp), connect_too_large (limits.maxConnectBytes), not_connect (a first packet that is not a CONNECT)',
      labelNames: ['reason'],
      registers,
    }),
    publishDenied: new Counter({ name: 'herald_mqtt_publish_denied_total', help: 'MQTT PUBLISHes and wills the ACL refused (closed or dropped, per mqtt.deniedPublish)', registers }),
    queueDropped: new Counter({ name: 'herald_session_queue_dropped_total', help: 'Queued QoS 1/2 messages dropped from persistent sessions past limits.maxQueuedMessagesPerSession (the oldest of each queue)', registers }),
    sessionsExpired: new Counter({ name: 'herald_sessions_expired_total', help: 'Persistent sessions deleted after limits.sessionExpirySec unused (kind="session"); installations lose only their queue (kind="queue")', labelNames: ['kind'], registers }),
    memoryReclaimPause: new Histogram({ name: 'herald_memory_reclaim_pause_seconds', help: 'Garbage collections once a storm of new connections was over (memory.reclaimAfterConnections), by the seconds the process was paused', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers }),
    relay: {
      sent: (provider, ms) => {
        sent.inc({ provider })
        latency.observe({ provider }, ms / 1000)
      },
      retried: (provider) => retried.inc({ provider }),
      pruned: (provider) => pruned.inc({ provider }),
      dropped: (provider, reason) => dropped.inc({ provider, reason }),
      deadLettered: (provider) => dead.inc({ provider }),
    },
    counters: async () => await readCounters({ messagesIn, messagesOut, sent, dropped, dead }),
  }
}

/** The values read at scrape time (Gauges), registered on `registers`. */
function registerGauges (gauges: Gauges, registers: Registry[]): void {
  // eslint-disable-next-line no-new -- registered on `registry`, read at scrape time
  new Gauge({ name: 'herald_mqtt_connected_clients', help: 'Authenticated MQTT connections open now', registers, collect () { this.set(gauges.connectedClients()) } })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'herald_relay_outbox_depth', help: 'Relay jobs not settled yet', registers, collect () { this.set(gauges.relayOutboxDepth()) } })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'herald_mqtt_pending_connects', help: 'MQTT connections whose CONNECT has not fully arrived yet (limits.maxPendingConnectsPerIp per address)', registers, collect () { this.set(gauges.pendingConnects()) } })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'herald_storage_writable', help: '1 while the store writes; 0 while it refuses writes (full disk or I/O error) until it heals', registers, collect () { this.set(gauges.storageWritable()) } })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'herald_open_files',
    help: 'Open file descriptors of the process (sockets, LevelDB files, …), and its open-files limit (kind="limit")',
    labelNames: ['kind'],
    registers,
    collect () {
      const { limit, open } = gauges.openFiles()
      if (open !== null) this.set({ kind: 'open' }, open)
      if (limit !== null) this.set({ kind: 'limit' }, limit)
    },
  })

  // read from the store at scrape time; a failed read (Redis away) keeps the last value rather than failing the scrape
  const queued = { sessions: 0, messages: 0 }
  const readQueues = async (): Promise<void> => {
    try {
      Object.assign(queued, await gauges.queueTotals())
    } catch {}
  }
  // eslint-disable-next-line no-new
  new Gauge({ name: 'herald_session_queued_sessions', help: 'Persistent sessions with queued QoS 1/2 messages (cluster: every node reports the whole cluster; counted at most every 15 s)', registers, async collect () { await readQueues(); this.set(queued.sessions) } })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'herald_session_queued_messages', help: 'QoS 1/2 messages queued for persistent sessions and not acknowledged, every session\'s (cluster: every node reports the whole cluster; counted at most every 15 s)', registers, async collect () { await readQueues(); this.set(queued.messages) } })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'herald_relay_dead_letters',
    help: 'Relay jobs that ran out of attempts and are kept for inspection, replay or purge (cluster: every node reports the whole cluster)',
    registers,
    async collect () {
      try {
        this.set(await gauges.deadLetters())
      } catch {}
    },
  })
}

/** The counters' totals, for the admin overview. */
async function readCounters ({ messagesIn, messagesOut, sent, dropped, dead }: Record<'messagesIn' | 'messagesOut' | 'sent' | 'dropped' | 'dead', Counter<string>>): ReturnType<Metrics['counters']> {
  const sum = async (counter: Counter<string>): Promise<number> => (await counter.get()).values.reduce((total, { value }) => total + value, 0)
  const byProvider = async (...counters: Array<Counter<string>>): Promise<Record<string, number>> => {
    const totals: Record<string, number> = {}
    for (const counter of counters) {
      for (const { labels, value } of (await counter.get()).values) {
        const provider = String(labels.provider ?? 'none')
        totals[provider] = (totals[provider] ?? 0) + value
      }
    }
    return totals
  }
  return {
    messagesIn: await sum(messagesIn),
    messagesOut: await sum(messagesOut),
    relaySent: await byProvider(sent),
    relayFailed: await byProvider(dropped, dead),
  }
}
