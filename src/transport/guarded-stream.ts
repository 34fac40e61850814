import { Duplex } from 'node:stream'
import { FrameLimit } from './frame-limit.js'

/**
 * The connection stream aedes reads from: the bytes of `inner`, checked by a
 * FrameLimit, so an oversized or malformed packet destroys this one connection
 * before it is buffered. Writes pass straight through to `inner`.
 */
export class GuardedStream extends Duplex {
  readonly #inner: Duplex
  readonly #limit: FrameLimit
  /** The peer's address, for per-IP limits and logs. */
  readonly remoteAddress: string | undefined

  constructor (inner: Duplex, maxPacketBytes: number, remoteAddress: string | undefined) {
    super({ allowHalfOpen: false })
    this.#inner = inner
    this.#limit = new FrameLimit(maxPacketBytes)
    this.remoteAddress = remoteAddress

    inner.on('data', (chunk: Buffer) => {
      const violation = this.#limit.feed(chunk)
      if (violation !== null) {
        this.destroy(violation)
        return
      }
      if (!this.push(chunk)) inner.pause()
    })
    inner.once('end', () => this.push(null))
    inner.on('error', (err) => this.destroy(err))
    inner.once('close', () => this.destroy())
  }

  override _read (): void {
    this.#inner.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#inner.write(chunk)) callback()
    else this.#inner.once('drain', () => callback())
  }

  override _writev (chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    // mqtt-packet writes a packet in several small pieces; send them as one
    this.#inner.cork()
    let flushed = true
    for (const { chunk } of chunks) flushed = this.#inner.write(chunk)
    this.#inner.uncork()
    if (flushed) callback()
    else this.#inner.once('drain', () => callback())
  }

  override _final (callback: (error?: Error | null) => void): void {
    this.#inner.end(callback)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.#inner.destroy()
    callback(err)
  }
}
