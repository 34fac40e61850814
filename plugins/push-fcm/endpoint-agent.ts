import { Agent, type AgentOptions, type RequestOptions } from 'node:https'
import { isIP } from 'node:net'
import type { Duplex } from 'node:stream'
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls'

export interface Endpoint {
  readonly host: string
  readonly port: number
}

/**
 * Parses `push.fcm.endpoint` (`https://host[:port]`). firebase-admin fixes the
 * paths, so the endpoint is a host and port only.
 */
export function parseEndpoint (endpoint: string): Endpoint {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    throw new Error('push.fcm.endpoint: not a URL (expected https://host[:port])')
  }
  if (url.protocol !== 'https:') throw new Error('push.fcm.endpoint: must use https:// (firebase-admin only speaks TLS)')
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '' || url.password !== '') {
    throw new Error('push.fcm.endpoint: expected https://host[:port] without path, query or credentials')
  }
  // URL keeps the brackets of an IPv6 literal; tls.connect wants the bare address.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  return { host, port: url.port === '' ? 443 : Number(url.port) }
}

/**
 * An https.Agent that dials one endpoint whatever host a request names.
 *
 * firebase-admin has no host setting: it calls https://fcm.googleapis.com and
 * google-auth-library calls https://oauth2.googleapis.com/token (hard-coded in
 * its gtoken module; the service account's token_uri is not used). Both accept
 * an http agent (app `httpAgent`, `cert(serviceAccount, httpAgent)`), so this
 * agent sends them to a local fake or an on-premise proxy. The certificate is
 * checked against the endpoint's host, not the host the request asked for.
 */
export class EndpointAgent extends Agent {
  readonly #endpoint: Endpoint
  readonly #ca: string | Buffer | undefined

  constructor (endpoint: Endpoint, ca: string | Buffer | undefined, options: AgentOptions = {}) {
    super({ keepAlive: true, maxSockets: 32, ...options })
    this.#endpoint = endpoint
    this.#ca = ca
  }

  override createConnection (_options: RequestOptions, _callback?: (err: Error | null, stream: Duplex) => void): Duplex {
    const { host, port } = this.#endpoint
    return connect({
      host,
      port,
      // RFC 6066 §3: SNI carries DNS names only; an IP endpoint is checked against its IP SAN.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(this.#ca !== undefined ? { ca: this.#ca } : {}),
      checkServerIdentity: (_requested: string, cert: PeerCertificate) => checkServerIdentity(host, cert),
    })
  }
}
