import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { createWebSocketStream, WebSocketServer } from 'ws'
import type { ConnectionHandler } from './types.js'

export interface WebSocketOptions {
  /** URL path that carries MQTT, e.g. `/mqtt`. */
  readonly path: string
  /** Largest WebSocket message accepted; an MQTT packet spans one or more messages. */
  readonly maxPayload: number
  /**
   * Largest message until the connection's CONNECT has arrived: ws holds a
   * whole message before passing it on, so without it a peer could make the
   * broker hold `maxPayload` bytes without ever authenticating.
   */
  readonly maxConnectPayload: number
}

/**
 * MQTT over WebSocket on an existing HTTP(S) server: upgrades on `path` become
 * byte streams (ws 8 `createWebSocketStream`). websocket-stream is not used: it
 * is unmaintained and pins ws@3 (high-severity advisory GHSA-3h5v-q93c-6h6q).
 */
export function attachWebSocketTransport (server: Server, options: WebSocketOptions, onConnection: ConnectionHandler): WebSocketServer {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    // MQTT over WebSocket names the subprotocol `mqtt` (MQTT 3.1.1 section 6); older clients send `mqttv3.1`
    handleProtocols: (protocols) => ['mqtt', 'mqttv3.1'].find((p) => protocols.has(p)) ?? false,
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (pathOf(req) !== options.path) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // ws 8 has no per-connection message limit: its Receiver reads `_maxPayload` at each frame header,
      // and nothing has been read when handleUpgrade calls back
      const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver
      const limited = receiver !== undefined && typeof receiver._maxPayload === 'number'
      if (limited) receiver._maxPayload = options.maxConnectPayload
      const stream = createWebSocketStream(ws)
      onConnection(stream, req.socket.remoteAddress, limited ? () => { receiver._maxPayload = options.maxPayload } : undefined)
    })
  })
  return wss
}

function pathOf (req: IncomingMessage): string {
  const url = req.url ?? '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}
