import { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { FrameLimit, type FrameViolation } from './frame-limit.js'

/**
 * Bytes buffered for one connection before they are written without waiting
 * for the end of the event-loop turn (the size of one socket write worth
 * making on its own).
 */
const COALESCE_BYTES = 64 * 1024

/**
 * The limits of a connection whose CONNECT has not fully arrived yet (transport/pre-auth.ts),
 * one object for every connection.
 */
export interface PreAuth {
  /** the largest first packet, the CONNECT */
  readonly maxConnectBytes: number
  /**
   * Told once per connection: when its CONNECT has fully arrived (`null`), when it closes
   * before that (`null`), or when its first packet broke the CONNECT rules (the violation).
   */
  settled (remoteAddress: string | undefined, violation: FrameViolation | null): void
}

/** The GuardedStream over each inner connection, for the listeners all connections share. */
const guards = new WeakMap<Duplex, GuardedStream>()

/**
 * The connection stream aedes reads from: the bytes of `inner`, checked by a
 * FrameLimit, so an oversized or malformed packet destroys this one connection
 * before it is buffered.
 *
 * Writes are coalesced: everything aedes writes to this connection during one
 * event-loop turn (mqtt-packet writes each packet in several pieces, and a
 * fan-out writes many packets to the same subscriber) goes to `inner` as one
 * buffer at the end of the turn. One socket write per turn instead of one per
 * piece was the largest single cost in the fan-out profile; over WebSocket it
 * also makes one message of what would have been many.
 */
export type MqttTransport = 'tcp' | 'tls' | 'websocket'

export class GuardedStream extends Duplex {
  readonly #inner: Duplex
  readonly #limit: FrameLimit
  #pending: Buffer[] | undefined
  #pendingBytes = 0
  #flushScheduled = false
  /** `inner` asked us to wait for 'drain' */
  #blocked = false
  /** The write callback held back until `inner` drains. */
  #waiting: (() => void) | undefined
  /** The peer's address, for per-IP limits and logs. */
  readonly remoteAddress: string | undefined
  /** What the connection came over (the admin API shows it): MQTT over TCP, TLS, or WebSocket (ws or wss). */
  readonly transport: MqttTransport
  /** Present until the CONNECT has arrived or the connection has closed. */
  #preAuth: PreAuth | undefined
  /** The transport's own step once the CONNECT has arrived (WebSocket: a larger message size). */
  #onConnect: (() => void) | undefined

  /**
   * With `preAuth`, the first packet must be a CONNECT of at most
   * `preAuth.maxConnectBytes`; `onConnect` runs once it has fully arrived.
   */
  constructor (inner: Duplex, maxPacketBytes: number, remoteAddress: string | undefined, preAuth?: PreAuth, onConnect?: () => void) {
    super({ allowHalfOpen: false })
    this.#inner = inner
    this.#limit = new FrameLimit(maxPacketBytes, preAuth?.maxConnectBytes)
    this.remoteAddress = remoteAddress
    this.transport = inner instanceof TLSSocket ? 'tls' : inner instanceof Socket ? 'tcp' : 'websocket'
    this.#preAuth = preAuth
    this.#onConnect = onConnect
    // functions shared by every connection rather than closures per connection: an idle
    // connection's memory is mostly such small objects
    guards.set(inner, this)
    inner.on('data', GuardedStream.#onData)
    inner.on('end', GuardedStream.#onEnd)
    inner.on('error', GuardedStream.#onError)
    inner.on('close', GuardedStream.#onClose)
  }

  static #onData (this: Duplex, chunk: Buffer): void {
    const guard = guards.get(this)
    if (guard === undefined) return
    const violation = guard.#limit.feed(chunk)
    if (violation !== null) {
      guard.#endPreAuth(violation.violation)
      guard.destroy(violation)
      return
    }
    if (guard.#preAuth !== undefined && !guard.#limit.awaitingConnect) guard.#connectArrived()
    if (!guard.push(chunk)) this.pause()
  }

  static #onEnd (this: Duplex): void {
    guards.get(this)?.push(null)
  }

  static #onError (this: Duplex, err: Error): void {
    guards.get(this)?.destroy(err)
  }

  static #onClose (this: Duplex): void {
    const guard = guards.get(this)
    if (guard === undefined) return
    guard.#endPreAuth(null)
    guard.destroy()
  }

  #connectArrived (): void {
    const onConnect = this.#onConnect
    this.#endPreAuth(null)
    onConnect?.()
  }

  /** Ends this connection's pre-auth phase, once. */
  #endPreAuth (violation: FrameViolation | null): void {
    const preAuth = this.#preAuth
    if (preAuth === undefined) return
    this.#preAuth = undefined
    this.#onConnect = undefined
    preAuth.settled(this.remoteAddress, violation)
  }

  static #onDrain (this: Duplex): void {
    const guard = guards.get(this)
    if (guard === undefined) return
    guard.#blocked = false
    const waiting = guard.#waiting
    guard.#waiting = undefined
    waiting?.()
  }

  /**
   * Bytes written to this connection that the peer has not taken yet: in this
   * stream's buffer, pending coalescing, and in the socket's buffer.
   */
  get outgoingBytes (): number {
    return this.writableLength + this.#pendingBytes + this.#inner.writableLength
  }

  override _read (): void {
    this.#inner.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#enqueue(chunk)
    this.#settle(callback)
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    for (const { chunk } of chunks) this.#enqueue(chunk)
    this.#settle(callback)
  }

  override _final (callback: (error?: Error | null) => void): void {
    this.#flush()
    this.#inner.end(callback)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    // aedes writes a refusing CONNACK and destroys the connection in the same turn: hand over what is pending first
    if (!this.#inner.destroyed) this.#flush()
    this.#inner.destroy()
    callback(err)
  }

  #enqueue (chunk: Buffer): void {
    (this.#pending ??= []).push(chunk)
    this.#pendingBytes += chunk.length
  }

  /** Accepts more writes at once while little is buffered and `inner` is not full; otherwise writes now and waits for 'drain' if asked to. */
  #settle (callback: (error?: Error | null) => void): void {
    if (!this.#blocked && this.#pendingBytes < COALESCE_BYTES) {
      this.#scheduleFlush()
      callback()
      return
    }
    if (this.#flush()) callback()
    else this.#waiting = callback
  }

  #scheduleFlush (): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    setImmediate(() => {
      this.#flushScheduled = false
      if (!this.destroyed) this.#flush()
    })
  }

  /** Writes what is pending as one buffer; returns false when `inner` wants us to wait for 'drain'. */
  #flush (): boolean {
    const pending = this.#pending
    if (pending !== undefined && pending.length > 0) {
      const data = pending.length === 1 ? pending[0] as Buffer : Buffer.concat(pending, this.#pendingBytes)
      this.#pending = undefined
      this.#pendingBytes = 0
      if (!this.#inner.write(data) && !this.#blocked) {
        this.#blocked = true
        this.#inner.once('drain', GuardedStream.#onDrain)
      }
    }
    return !this.#blocked
  }
}
