import { createServer, type Server } from 'node:net'
import type { ConnectionHandler } from './types.js'

/** MQTT over plain TCP (default port 1883). */
export function createTcpTransport (onConnection: ConnectionHandler): Server {
  return createServer((socket) => {
    // MQTT packets are small and latency matters more than coalescing
    socket.setNoDelay(true)
    onConnection(socket, socket.remoteAddress)
  })
}
