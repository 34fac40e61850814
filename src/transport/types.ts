import type { Duplex } from 'node:stream'

/** What a transport hands over for every new connection: a byte stream and the peer's address. */
export type ConnectionHandler = (stream: Duplex, remoteAddress: string | undefined) => void
