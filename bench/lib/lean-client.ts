import { connect as netConnect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import mqttPacket from 'mqtt-packet'
import { DISCONNECT, encodePubacks, PINGREQ } from './mqtt-wire.js'

export interface LeanClientOptions {
  readonly host: string
  readonly port: number
  readonly localAddress?: string | undefined
  readonly clientId: string
  readonly clean: boolean
  /** seconds; 0 turns keepalive off */
  readonly keepalive: number
  readonly username?: string | undefined
  readonly password?: string | undefined
  /** give up on the CONNACK after this long */
  readonly timeoutMs: number
}

export type PublishHandler = (payload: Buffer, qos: number, packetId: number) => void

/**
 * A minimal MQTT 3.1.1 client over a raw socket: the load generator must cost
 * far less than the broker it drives, so there is no mqtt.js, no per-packet
 * objects and no event emitter on the hot path. Incoming frames are split by
 * their fixed header; PUBLISH and PUBACK are decoded in place, QoS 1
 * deliveries are acknowledged in one write per socket read.
 */
export class LeanClient {
  readonly options: LeanClientOptions
  socket: Socket | undefined
  closed = false
  error: Error | undefined
  onPublish: PublishHandler | undefined
  onPuback: ((id: number) => void) | undefined
  onClose: (() => void) | undefined
  /** acknowledge QoS 1 deliveries (a subscriber's job) */
  autoAck = true

  #pending: Buffer | undefined
  #connack: ((rc: number) => void) | undefined
  readonly #subacks = new Map<number, (granted: number[]) => void>()
  #nextSubId = 1

  constructor (options: LeanClientOptions) {
    this.options = options
  }

  /** Opens the socket, sends CONNECT; resolves with the CONNACK return code (rejects on socket error or timeout). */
  async connect (): Promise<number> {
    const o = this.options
    return await new Promise<number>((resolve, reject) => {
      let settled = false
      const finish = (err: Error | undefined, rc?: number): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.#connack = undefined
        if (err !== undefined) {
          this.destroy()
          reject(err)
        } else {
          resolve(rc as number)
        }
      }
      const timer = setTimeout(() => finish(new Error('CONNACK timeout')), o.timeoutMs)
      const socket = netConnect({ host: o.host, port: o.port, ...(o.localAddress !== undefined && { localAddress: o.localAddress }), noDelay: true })
      this.socket = socket
      this.#connack = (rc) => finish(undefined, rc)
      socket.on('connect', () => {
        const packet: mqttPacket.IConnectPacket = {
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clientId: o.clientId,
          clean: o.clean,
          keepalive: o.keepalive,
          ...(o.username !== undefined && { username: o.username }),
          ...(o.password !== undefined && { password: Buffer.from(o.password, 'utf8') }),
        }
        socket.write(mqttPacket.generate(packet))
      })
      socket.on('data', (chunk: Buffer) => this.#onData(chunk))
      socket.on('error', (err) => {
        this.error ??= err
        finish(err)
      })
      socket.on('close', () => {
        this.closed = true
        finish(this.error ?? new Error('connection closed before CONNACK'))
        this.onClose?.()
      })
    })
  }

  /** SUBSCRIBE to one filter; resolves with the granted QoS (0x80 = refused). */
  async subscribe (filter: string, qos: 0 | 1, timeoutMs = 10_000): Promise<number> {
    const id = this.#nextSubId++
    const granted = await new Promise<number[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#subacks.delete(id)
        reject(new Error(`SUBACK timeout for ${filter}`))
      }, timeoutMs)
      this.#subacks.set(id, (g) => {
        clearTimeout(timer)
        resolve(g)
      })
      this.write(mqttPacket.generate({ cmd: 'subscribe', messageId: id, subscriptions: [{ topic: filter, qos }] }))
    })
    return granted[0] ?? 0x80
  }

  write (buf: Buffer): boolean {
    if (this.socket === undefined || this.closed) return false
    return this.socket.write(buf)
  }

  ping (): void { this.write(PINGREQ) }

  /** DISCONNECT then close, so the broker drops the will and closes first. */
  disconnect (): void {
    if (this.socket === undefined || this.closed) return
    this.socket.end(DISCONNECT)
  }

  destroy (): void {
    this.socket?.destroy()
  }

  #onData (chunk: Buffer): void {
    let buf = chunk
    if (this.#pending !== undefined) {
      buf = Buffer.concat([this.#pending, chunk])
      this.#pending = undefined
    }
    let acks: number[] | undefined
    let o = 0
    const end = buf.length
    while (o + 2 <= end) {
      const type = buf[o] as number
      // Remaining Length: up to four bytes, 7 bits each (section 2.2.3)
      let length = 0
      let multiplier = 1
      let p = o + 1
      let complete = false
      while (p < end) {
        const byte = buf[p++] as number
        length += (byte & 0x7f) * multiplier
        multiplier *= 128
        if ((byte & 0x80) === 0) { complete = true; break }
        if (p - o > 4) {
          this.error ??= new Error('malformed remaining length from broker')
          this.destroy()
          return
        }
      }
      if (!complete || p + length > end) break
      const body = p
      const next = p + length
      switch (type >> 4) {
        case 3: { // PUBLISH
          const qos = (type >> 1) & 0x03
          const topicLength = buf.readUInt16BE(body)
          let q = body + 2 + topicLength
          let packetId = 0
          if (qos > 0) {
            packetId = buf.readUInt16BE(q)
            q += 2
            if (this.autoAck) (acks ??= []).push(packetId)
          }
          this.onPublish?.(buf.subarray(q, next), qos, packetId)
          break
        }
        case 4: // PUBACK
          this.onPuback?.(buf.readUInt16BE(body))
          break
        case 2: // CONNACK: session present, return code
          this.#connack?.(buf[body + 1] as number)
          break
        case 9: { // SUBACK: packet id, granted QoS per filter
          const id = buf.readUInt16BE(body)
          const granted: number[] = []
          for (let i = body + 2; i < next; i++) granted.push(buf[i] as number)
          const done = this.#subacks.get(id)
          this.#subacks.delete(id)
          done?.(granted)
          break
        }
        default: // PINGRESP and anything else the generator does not use
          break
      }
      o = next
    }
    if (o < end) this.#pending = buf.subarray(o)
    if (acks !== undefined) this.write(encodePubacks(acks))
  }
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight; bounded by `deadline` (performance.now()). */
export async function runBounded (count: number, concurrency: number, deadline: number, task: (i: number) => Promise<void>): Promise<{ started: number }> {
  let next = 0
  async function worker (): Promise<void> {
    while (next < count && performance.now() < deadline) {
      const i = next++
      await task(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => await worker()))
  return { started: next }
}
