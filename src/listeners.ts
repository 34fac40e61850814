import { readFileSync } from 'node:fs'
import type { Server as NetServer } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { WebSocketServer } from 'ws'
import type { HeraldConfig } from './config/index.js'
import { buildHttpApp } from './http/app.js'
import type { HttpContext } from './http/context.js'
import type { ConnectionBudget } from './transport/connection-budget.js'
import { closeServer, listen } from './transport/listen.js'
import { maxConnectBytes } from './transport/pre-auth.js'
import { createTcpTransport } from './transport/tcp.js'
import { createTlsTransport } from './transport/tls.js'
import { attachWebSocketTransport } from './transport/ws.js'

/** The ports actually bound (the chosen ones where the config said 0). */
export interface ListeningPorts {
  readonly mqtt: number
  readonly http: number
  readonly mqtts: number | null
  readonly https: number | null
}

/** Where every listener hands a new connection: the stream and the peer's address (the broker's door). */
export type ConnectionHandler = (stream: Duplex, remoteAddress: string | undefined, onConnect?: () => void) => void

/**
 * Every socket Herald listens on: MQTT over TCP, the HTTP API with MQTT over
 * WebSocket on the same port, and their TLS twins when a certificate is
 * configured. Each is watched by the connection budget (open files).
 */
export class Listeners {
  readonly #config: HeraldConfig
  readonly #budget: ConnectionBudget
  readonly #handle: ConnectionHandler
  readonly #netServers: NetServer[] = []
  readonly #httpApps: FastifyInstance[] = []
  readonly #webSocketServers: WebSocketServer[] = []

  constructor (config: HeraldConfig, budget: ConnectionBudget, handle: ConnectionHandler) {
    this.#config = config
    this.#budget = budget
    this.#handle = handle
  }

  /** Binds every configured listener; resolves with the ports bound. */
  async start (ctx: HttpContext): Promise<ListeningPorts> {
    const { config } = this
    const mqtt = await this.#listenMqtt(createTcpTransport(this.#handle), config.mqtt.port)
    const http = await this.#listenHttp(ctx, config.http.port)
    if (config.tls.certFile === null || config.tls.keyFile === null) return { mqtt, http, mqtts: null, https: null }
    const tls = { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
    // a stalled handshake holds memory as a stalled CONNECT does
    const mqtts = await this.#listenMqtt(createTlsTransport({ ...tls, handshakeTimeout: config.limits.connectTimeoutMs }, this.#handle), config.tls.mqttPort)
    const https = await this.#listenHttp(ctx, config.tls.httpsPort, tls)
    return { mqtt, http, mqtts, https }
  }

  /** Stops accepting MQTT and WebSocket connections; resolves once the MQTT listeners are closed (their open connections are the broker's to close). */
  async stopAccepting (): Promise<void> {
    const closing = this.#netServers.map(async (server) => await closeServer(server))
    for (const wss of this.#webSocketServers) wss.close()
    this.#netServers.length = 0
    this.#webSocketServers.length = 0
    await Promise.all(closing)
  }

  /** Closes the HTTP listeners, after their requests are answered. */
  async closeHttp (): Promise<void> {
    const apps = this.#httpApps.splice(0)
    await Promise.all(apps.map(async (app) => await app.close()))
  }

  private get config (): HeraldConfig {
    return this.#config
  }

  async #listenMqtt (server: NetServer, port: number): Promise<number> {
    this.#netServers.push(server)
    this.#budget.watch(server, 'mqtt')
    return await listen(server, port, this.config.listen.host)
  }

  async #listenHttp (ctx: HttpContext, port: number, tls?: { cert: Buffer, key: Buffer }): Promise<number> {
    const { config } = this
    const app = await buildHttpApp(ctx, tls !== undefined ? { https: tls } : {})
    this.#httpApps.push(app)
    this.#budget.watch(app.server, 'http')
    // an MQTT packet may be split over several WebSocket messages; one message never needs more than a packet
    this.#webSocketServers.push(attachWebSocketTransport(app.server, {
      path: config.http.wsPath,
      maxPayload: config.limits.maxPacketBytes,
      maxConnectPayload: maxConnectBytes(config),
    }, this.#handle))
    await app.listen({ port, host: config.listen.host })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('HTTP listener has no TCP address')
    return address.port
  }
}
