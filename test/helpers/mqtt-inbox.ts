import type { IClientOptions, IConnackPacket, MqttClient } from 'mqtt'
import { brokerEvent, connackOf, connect, type Teardown, type TestBroker } from './broker.js'

/** One message as the client got it. */
export interface Received { readonly topic: string, readonly payload: Buffer, readonly retain: boolean }

export interface Inbox {
  readonly client: MqttClient
  readonly connack: IConnackPacket
  /** Every message this connection received, in arrival order, including those right after CONNACK. */
  readonly messages: readonly Received[]
  /** The first message not yet returned by `next`, waiting for it if it has not come yet. */
  next (): Promise<Received>
  /** Resolves once `messages` holds at least `count` messages. */
  waitFor (count: number): Promise<void>
}

export interface InboxOptions {
  /**
   * Also wait for this broker's 'clientReady' about the client id: aedes has
   * then sent a restored session's queue too, so a marker published afterwards
   * arrives after it.
   */
  readyOn?: TestBroker
}

export const text = (message: Received): string => message.payload.toString('utf8')

/**
 * Connects with `connect` (so it is ended at teardown) and records every
 * message from before CONNACK on: a restored session's queue follows the
 * CONNACK at once and must not be missed. `next` and `waitFor` reject when the
 * connection closes before what they wait for has come, rather than hang.
 */
export async function connectInbox (t: Teardown, url: string, options: IClientOptions = {}, { readyOn }: InboxOptions = {}): Promise<Inbox> {
  const name = options.clientId ?? url
  let ready: Promise<void> | undefined
  if (readyOn !== undefined) {
    if (options.clientId === undefined) throw new Error('readyOn needs a clientId')
    ready = brokerEvent(readyOn, 'clientReady', options.clientId)
  }

  const messages: Received[] = []
  const waiting = new Set<{ count: number, resolve: () => void, reject: (err: Error) => void }>()
  const client = await connect(t, url, options, (topic, payload, packet) => {
    messages.push({ topic, payload, retain: packet.retain })
    for (const waiter of waiting) {
      if (messages.length < waiter.count) continue
      waiting.delete(waiter)
      waiter.resolve()
    }
  })
  client.on('close', () => {
    for (const waiter of waiting) waiter.reject(new Error(`${name}: connection closed after ${messages.length} of ${waiter.count} messages`))
    waiting.clear()
  })
  await ready

  const waitFor = async (count: number): Promise<void> => {
    if (messages.length >= count) return
    // closed before the 'close' listener above was attached, or since
    if (!client.connected) throw new Error(`${name}: connection closed after ${messages.length} of ${count} messages`)
    await new Promise<void>((resolve, reject) => waiting.add({ count, resolve, reject }))
  }
  let taken = 0
  return {
    client,
    connack: connackOf(client),
    messages,
    waitFor,
    next: async () => {
      const index = taken++
      await waitFor(index + 1)
      return messages[index] as Received
    },
  }
}
