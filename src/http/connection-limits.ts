import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { HeraldConfig } from '../config/index.js'

/** Options of Node's HTTP(S) server that bound how long a connection may take to send a request. */
export interface HttpServerTimeouts {
  readonly headersTimeout: number
  readonly requestTimeout: number
  readonly keepAliveTimeout: number
  readonly connectionsCheckingInterval: number
}

/**
 * `http.headersTimeoutMs` / `requestTimeoutMs` / `keepAliveTimeoutMs` as Node's server options.
 * Node only enforces headers and request timeouts when it sweeps its connection list, every
 * `connectionsCheckingInterval` (30 s by default, which would double a 30 s timeout): sweep
 * every quarter of the shorter timeout, at most once a second. A sweep walks the connections
 * that are receiving a request, in C++; idle keep-alive and upgraded (WebSocket) ones are not in it.
 */
export function httpServerTimeouts (http: HeraldConfig['http']): HttpServerTimeouts {
  const shortest = Math.min(http.headersTimeoutMs, http.requestTimeoutMs)
  return {
    headersTimeout: http.headersTimeoutMs,
    requestTimeout: http.requestTimeoutMs,
    keepAliveTimeout: http.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(shortest / 4))),
  }
}

/**
 * Closes a new connection at once when its address already has `max` open
 * (`http.maxConnectionsPerIp`; 0: no cap). Counted from TCP accept, so sockets
 * still in the TLS handshake or sending headers count. A connection upgraded
 * to MQTT over WebSocket stops counting: it is an MQTT connection then, bounded
 * by the MQTT limits, and devices behind one NAT address may hold many.
 */
export function limitConnectionsPerIp (server: Server, max: number, onRefused: () => void): void {
  if (max === 0) return
  // address → remote port → the accepted socket; a port identifies one open connection of an address
  const open = new Map<string, Map<number, Socket>>()
  const release = (address: string, port: number, socket?: Socket): void => {
    const ports = open.get(address)
    if (ports === undefined) return
    if (socket !== undefined && ports.get(port) !== socket) return
    ports.delete(port)
    if (ports.size === 0) open.delete(address)
  }
  // `connection` is the raw TCP socket for HTTP and HTTPS alike (before any TLS handshake)
  server.on('connection', (socket: Socket) => {
    const { remoteAddress: address, remotePort: port } = socket
    // already reset by the peer: nothing to count, Node's HTTP side drops it
    if (address === undefined || port === undefined) return
    let ports = open.get(address)
    if (ports === undefined) open.set(address, ports = new Map())
    if (ports.size >= max) {
      onRefused()
      socket.destroy()
      return
    }
    ports.set(port, socket)
    socket.once('close', () => release(address, port, socket))
  })
  // for HTTPS the upgraded socket is the TLS socket, not the TCP one: find the connection by address and port
  server.on('upgrade', (_request: IncomingMessage, socket: Duplex) => {
    const { remoteAddress, remotePort } = socket as Socket
    if (remoteAddress !== undefined && remotePort !== undefined) release(remoteAddress, remotePort)
  })
}
