import type { Logger } from 'pino'
import type { HeraldConfig } from '../config/index.js'
import type { FrameViolation } from './frame-limit.js'
import type { PreAuth } from './guarded-stream.js'
import { ThrottledWarning } from './throttled-warning.js'

/** Fixed and variable header, the length prefixes of the payload fields, and a username (Herald does not read it). */
const CONNECT_OVERHEAD = 512
/** Room for a will payload: a status message ("offline"), not content. */
const WILL_PAYLOAD_ROOM = 1024
/** Client ids and topics are limited in UTF-16 code units; one takes at most 3 bytes of UTF-8. */
const UTF8_BYTES_PER_UNIT = 3

/** Why a connection was refused before its CONNECT was read: the metric's `reason`. */
export type PreAuthRefusal = 'pending_per_ip' | 'connect_too_large' | 'not_connect'

/**
 * The largest CONNECT a connection may send: `limits.maxConnectBytes`, or
 * derived from what a CONNECT carries: a token of `auth.jwt.maxTokenBytes`,
 * a client id and a will topic at their limits (in UTF-8), 1 KiB of will
 * payload and the headers (10,880 bytes with the defaults). Never more than
 * `limits.maxPacketBytes`.
 */
export function maxConnectBytes (config: Pick<HeraldConfig, 'auth' | 'limits'>): number {
  const { limits } = config
  const derived = CONNECT_OVERHEAD + config.auth.jwt.maxTokenBytes +
    UTF8_BYTES_PER_UNIT * (limits.maxClientIdLength + limits.maxTopicLength) + WILL_PAYLOAD_ROOM
  return Math.min(limits.maxConnectBytes ?? derived, limits.maxPacketBytes)
}

export interface PendingConnectsOptions {
  readonly maxConnectBytes: number
  /** connections of one address whose CONNECT has not arrived yet; 0: no cap */
  readonly maxPerIp: number
  readonly logger: Logger
  /** counts each refusal (the metric) */
  readonly onRefused?: (reason: PreAuthRefusal) => void
}

/**
 * The connections whose CONNECT has not fully arrived, per peer address.
 *
 * Until its CONNECT is in, a connection is nobody's: it is not counted by
 * `limits.connectRatePerIp` (which counts CONNECTs) nor by
 * `limits.maxConnectionsPerUser`, and a peer that opens sockets and stalls
 * costs the broker memory for up to `limits.connectTimeoutMs` each. So its
 * first packet is held to `maxConnectBytes` (GuardedStream), and each address
 * may have at most `maxPerIp` such connections: a new one beyond it is closed
 * at once, counted, and logged at warn at most every 10 s with the count.
 */
export class PendingConnects implements PreAuth {
  readonly maxConnectBytes: number
  readonly #maxPerIp: number
  readonly #onRefused: (reason: PreAuthRefusal) => void
  readonly #perIp = new Map<string, number>()
  #size = 0
  #lastAddress: string | undefined
  readonly #warning: ThrottledWarning

  constructor ({ maxConnectBytes, maxPerIp, logger, onRefused = () => {} }: PendingConnectsOptions) {
    this.maxConnectBytes = maxConnectBytes
    this.#maxPerIp = maxPerIp
    this.#onRefused = onRefused
    this.#warning = new ThrottledWarning(logger, 'connections refused: too many connections from one address have not sent their CONNECT (limits.maxPendingConnectsPerIp)',
      () => ({ ip: this.#lastAddress, maxPendingConnectsPerIp: this.#maxPerIp }))
  }

  /** Connections whose CONNECT has not arrived yet. */
  get size (): number {
    return this.#size
  }

  /**
   * Counts a new connection from `remoteAddress` until `settled`; false when
   * that address is at the cap (the caller closes the connection).
   */
  admit (remoteAddress: string | undefined): boolean {
    const key = remoteAddress ?? 'unknown'
    const pending = this.#perIp.get(key) ?? 0
    if (this.#maxPerIp > 0 && pending >= this.#maxPerIp) {
      this.#refused(key)
      return false
    }
    this.#perIp.set(key, pending + 1)
    this.#size++
    return true
  }

  settled (remoteAddress: string | undefined, violation: FrameViolation | null): void {
    const key = remoteAddress ?? 'unknown'
    const pending = this.#perIp.get(key)
    if (pending === undefined) return
    if (pending <= 1) this.#perIp.delete(key)
    else this.#perIp.set(key, pending - 1)
    this.#size--
    // a malformed length counts with a wrong packet type: neither is the start of a CONNECT
    if (violation !== null) this.#onRefused(violation === 'too_large' ? 'connect_too_large' : 'not_connect')
  }

  close (): void {
    this.#warning.close()
  }

  #refused (address: string): void {
    this.#onRefused('pending_per_ip')
    this.#lastAddress = address
    this.#warning.count()
  }
}
