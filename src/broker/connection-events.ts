import type { Aedes, Client } from 'aedes'
import { sentDisconnect } from './aedes-internals.js'

/**
 * Why an admitted connection ended, as far as aedes tells: `disconnect` (the
 * client sent DISCONNECT), `keepalive` (nothing within 1.5 keepalive
 * periods), `error` (a protocol or socket error), `closed` (the socket closed
 * without DISCONNECT, or the server closed it: takeover, token expiry, slow
 * client, an admin, shutdown).
 */
export type DisconnectReason = 'disconnect' | 'keepalive' | 'error' | 'closed'

export interface ConnectionEventsObserver {
  connected (): void
  disconnected (reason: DisconnectReason): void
}

/**
 * Counts admitted connections and their ends from aedes' events ('client'
 * once a CONNECT is accepted, 'clientDisconnect' when that client goes;
 * 'keepaliveTimeout' and 'clientError' come before it and say why).
 */
export function watchConnectionEvents (aedes: Aedes, observer: ConnectionEventsObserver): void {
  const reasons = new WeakMap<Client, DisconnectReason>()
  aedes.on('client', () => observer.connected())
  aedes.on('keepaliveTimeout', (client) => reasons.set(client, 'keepalive'))
  // aedes reports a keepalive timeout as an error too: the first reason stands
  aedes.on('clientError', (client) => { if (!reasons.has(client)) reasons.set(client, 'error') })
  aedes.on('clientDisconnect', (client) => {
    observer.disconnected(sentDisconnect(client) ? 'disconnect' : reasons.get(client) ?? 'closed')
  })
}
