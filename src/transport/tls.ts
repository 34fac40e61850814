import { createServer, type Server, type TlsOptions } from 'node:tls'
import type { ConnectionHandler } from './types.js'

/** MQTT over TLS (mqtts, default port 8883). */
export function createTlsTransport (options: TlsOptions, onConnection: ConnectionHandler): Server {
  const server = createServer({ minVersion: 'TLSv1.2', ...options }, (socket) => {
    socket.setNoDelay(true)
    onConnection(socket, socket.remoteAddress)
  })
  // a failed handshake concerns that one peer only
  server.on('tlsClientError', (_err, socket) => socket.destroy())
  return server
}
