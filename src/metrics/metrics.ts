import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'

/** Herald's Prometheus metrics, served at `/metrics`. One registry per server, so tests can run several. */
export interface Metrics {
  readonly registry: Registry
  readonly messagesIn: Counter<'transport'>
  readonly messagesOut: Counter
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly authFailures: Counter<'transport' | 'code'>
}

export function createMetrics (connectedClients: () => number): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'herald_' })
  // eslint-disable-next-line no-new -- registered on `registry`, read at scrape time
  new Gauge({
    name: 'herald_mqtt_connected_clients',
    help: 'Authenticated MQTT connections open now',
    registers: [registry],
    collect () { this.set(connectedClients()) },
  })
  return {
    registry,
    messagesIn: new Counter({ name: 'herald_messages_in_total', help: 'Messages published into the broker, by where they came from', labelNames: ['transport'], registers: [registry] }),
    messagesOut: new Counter({ name: 'herald_mqtt_messages_out_total', help: 'Messages delivered to MQTT clients (live or from their queue)', registers: [registry] }),
    httpRequests: new Counter({ name: 'herald_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    authFailures: new Counter({ name: 'herald_auth_failures_total', help: 'Refused credentials, by transport and error code', labelNames: ['transport', 'code'], registers: [registry] }),
  }
}
