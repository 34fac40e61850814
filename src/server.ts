import { readFileSync } from 'node:fs'
import type { Server as NetServer } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import type { WebSocketServer } from 'ws'
import { createAcl, noAppTopics } from './acl/index.js'
import { createTokenVerifier } from './auth/index.js'
import { createBroker, type Broker } from './broker/create-broker.js'
import type { HeraldConfig } from './config/index.js'
import { buildHttpApp } from './http/app.js'
import { openDatabase, type Database } from './store/open-store.js'
import { GuardedStream } from './transport/guarded-stream.js'
import { closeServer, listen } from './transport/listen.js'
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

export interface HeraldServer {
  start (): Promise<ListeningPorts>
  /** Stops accepting, closes every client, flushes and closes the store. */
  stop (): Promise<void>
  /** Present between start() and stop(); for tests and plugins. */
  readonly broker: Broker | undefined
}

export interface ServerOptions {
  readonly logger?: Logger
}

export function buildServer (config: HeraldConfig, options: ServerOptions = {}): HeraldServer {
  const logger = options.logger ?? pino({ level: config.log.level, base: { name: 'herald' } })
  const host = config.listen.host
  let ready = false
  let db: Database | undefined
  let broker: Broker | undefined
  const netServers: NetServer[] = []
  const httpApps: FastifyInstance[] = []
  const webSocketServers: WebSocketServer[] = []

  function handleConnection (stream: Duplex, remoteAddress: string | undefined): void {
    if (broker === undefined) {
      stream.destroy()
      return
    }
    broker.aedes.handle(new GuardedStream(stream, config.limits.maxPacketBytes, remoteAddress))
  }

  async function startHttp (port: number, tls?: { cert: Buffer, key: Buffer }): Promise<number> {
    const app = buildHttpApp({ logger, health: { ready: () => ready }, ...(tls !== undefined && { https: tls }) })
    httpApps.push(app)
    // an MQTT packet may be split over several WebSocket messages; one message never needs more than a packet
    webSocketServers.push(attachWebSocketTransport(app.server, { path: config.http.wsPath, maxPayload: config.limits.maxPacketBytes }, handleConnection))
    await app.listen({ port, host })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('HTTP listener has no TCP address')
    return address.port
  }

  return {
    get broker () { return broker },

    async start () {
      const verifier = createTokenVerifier(config.auth.jwt)
      const acl = createAcl({ rules: config.acl.rules, anonymousGrants: config.auth.anonymous.acl, appTopics: noAppTopics })
      db = await openDatabase(config.dataDir)
      broker = await createBroker({ config, db, verifier, acl, logger })

      const tcp = createTcpTransport(handleConnection)
      netServers.push(tcp)
      const mqtt = await listen(tcp, config.mqtt.port, host)
      const http = await startHttp(config.http.port)

      let mqtts: number | null = null
      let https: number | null = null
      if (config.tls.certFile !== null && config.tls.keyFile !== null) {
        const tls = { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
        const tlsServer = createTlsTransport(tls, handleConnection)
        netServers.push(tlsServer)
        mqtts = await listen(tlsServer, config.tls.mqttPort, host)
        https = await startHttp(config.tls.httpsPort, tls)
      }
      ready = true
      const ports = { mqtt, http, mqtts, https }
      logger.info({ host, ports, wsPath: config.http.wsPath, dataDir: config.dataDir }, 'herald listening')
      return ports
    },

    async stop () {
      ready = false
      // stop accepting first; open connections are closed by the broker below
      const closing = netServers.map(async (server) => await closeServer(server))
      for (const wss of webSocketServers) wss.close()
      if (broker !== undefined) await broker.close()
      await Promise.all(closing)
      await Promise.all(httpApps.map(async (app) => await app.close()))
      if (db !== undefined) await db.close()
      broker = undefined
      db = undefined
      netServers.length = 0
      httpApps.length = 0
      webSocketServers.length = 0
      logger.info('herald stopped')
    },
  }
}
