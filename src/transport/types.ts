import type { Duplex } from 'node:stream'

/**
 * What a transport hands over for every new connection: a byte stream, the
 * peer's address, and what the transport does once the connection's CONNECT
 * has arrived (WebSocket: accept larger messages).
 */
export type ConnectionHandler = (stream: Duplex, remoteAddress: string | undefined, onConnect?: () => void) => void
