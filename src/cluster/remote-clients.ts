import { randomBytes } from 'node:crypto'
import msgpack from 'msgpack-lite'
import { errorCodes, HeraldError, type ErrorCode } from '../errors/index.js'
import type { RedisConnection } from '../store/redis/connection.js'
import { PendingReplies } from './pending-replies.js'

/**
 * What the HTTP API asks of one client id's live connection (BrokerPort's
 * deliverTo, subscribe, unsubscribe, deleteSession, disconnect) when that connection is
 * on another node of the cluster: the node holding it performs the operation,
 * through the same code as a call made on that node.
 *
 * A request and its reply are Redis pub/sub messages, never a protocol of our
 * own between nodes. Each node listens on two channels: `node:<id>:ops` for
 * the requests other nodes send it, `node:<id>:replies` for the replies to its
 * own. Both are msgpack (payloads are Buffers):
 *
 *   request  { id, from, op, clientId, args }   id: unique per sender process; from: its node id
 *   reply    { id, result: 'done' | 'absent' }  absent: no live connection of clientId here (it left meanwhile)
 *            { id, error: { code, message } }   the operation failed on that node
 *
 * A request nobody hears (PUBLISH reached no subscriber: the node is gone) or
 * that gets no reply within `timeoutMs` (the node is stopped or cut off)
 * rejects with NODE_UNREACHABLE: the operation may or may not have happened,
 * and the caller's HTTP client retries once the node answers again or its
 * lease has expired (its connections have then left the presence).
 */
export type RemoteOp =
  | { readonly op: 'deliverTo', readonly args: { readonly topic: string, readonly payload: Buffer, readonly qos: 0 | 1, readonly retain: boolean } }
  | { readonly op: 'subscribe', readonly args: { readonly topic: string, readonly qos: 0 | 1 } }
  | { readonly op: 'unsubscribe', readonly args: { readonly topic: string } }
  | { readonly op: 'deleteSession', readonly args: Record<string, never> }
  | { readonly op: 'disconnect', readonly args: Record<string, never> }

/** Performs `op` on this node's live connection of `clientId`: true when done, false when there is none. */
export type RemoteOpHandler = (clientId: string, op: RemoteOp) => Promise<boolean>

export interface RemoteClients {
  /** This node's id. */
  readonly node: string
  /**
   * Asks `node` to perform `op` on its live connection of `clientId`.
   * Resolves true when done, false when that node has no such connection;
   * rejects with the error the operation failed with there, or NODE_UNREACHABLE.
   */
  request (node: string, clientId: string, op: RemoteOp): Promise<boolean>
  /** Sets what performs the requests of other nodes; until then every request is answered 'absent' (no broker, no connection). */
  serve (handler: RemoteOpHandler): void
  /** Stops listening; requests still waiting reject with SERVER_UNAVAILABLE. */
  close (): Promise<void>
}

export interface RemoteClientsOptions {
  /** this node's id (cluster.nodeId) */
  readonly node: string
  /** how long a request waits for its reply (cluster.requestTimeoutMs) */
  readonly timeoutMs: number
  /** a request or reply that could not be read or answered */
  readonly onError: (err: unknown) => void
}

interface Request { readonly id: string, readonly from: string, readonly op: RemoteOp['op'], readonly clientId: string, readonly args: unknown }
interface Reply { readonly id: string, readonly result?: 'done' | 'absent', readonly error?: { readonly code: string, readonly message: string } }

export async function openRemoteClients (conn: RedisConnection, { node, timeoutMs, onError }: RemoteClientsOptions): Promise<RemoteClients> {
  const opsChannel = (of: string): string => conn.channel(`node:${of}:ops`)
  const repliesChannel = (of: string): string => conn.channel(`node:${of}:replies`)
  const ownOps = opsChannel(node)
  const ownReplies = repliesChannel(node)
  const pending = new PendingReplies()
  // a reply meant for this node before a restart under the same node id never settles a new request
  const instance = randomBytes(6).toString('hex')
  let counter = 0
  let handler: RemoteOpHandler | undefined
  let closed = false

  const perform = async (request: Request): Promise<void> => {
    const reply = await replyTo(request, handler, node, onError)
    await conn.client.publish(repliesChannel(request.from), msgpack.encode(reply))
  }
  const settle = (reply: Reply): void => {
    if (reply.error !== undefined) pending.reject(reply.id, remoteError(reply.error))
    else pending.resolve(reply.id, reply.result === 'done')
  }

  const subscriber = conn.subscriber()
  subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
    let decoded: unknown
    try {
      decoded = msgpack.decode(message)
    } catch (err) {
      onError(err)
      return
    }
    const name = channel.toString()
    if (name === ownReplies && isReply(decoded)) settle(decoded)
    else if (name === ownOps && isRequest(decoded)) perform(decoded).catch(onError)
    else onError(new Error(`an unreadable message on ${name}`))
  })
  await subscriber.subscribe(ownOps, ownReplies)

  return {
    node,

    async request (target, clientId, { op, args }) {
      if (closed) throw new HeraldError('SERVER_UNAVAILABLE', 'this node is stopping')
      const id = `${instance}.${++counter}`
      const unreachable = (why: string): HeraldError => new HeraldError('NODE_UNREACHABLE', `cluster node ${target}, which holds the connection of ${clientId}, ${why}; retry later`)
      const reply = pending.wait(id, timeoutMs, () => unreachable(`did not answer within ${timeoutMs} ms (cluster.requestTimeoutMs)`))
      const request: Request = { id, from: node, op, clientId, args }
      let heard: number
      try {
        heard = await conn.client.publish(opsChannel(target), msgpack.encode(request))
      } catch (err) {
        // the reply promise is dropped unsettled: nobody waits on it
        pending.drop(id)
        throw new HeraldError('SERVER_UNAVAILABLE', 'Redis (cluster.redis.url) is not reachable', { cause: err })
      }
      // nobody listens on that node's channel: it is gone, only its presence records wait for its lease to expire
      if (heard === 0) pending.reject(id, unreachable('is not listening'))
      return await reply
    },

    serve (next) {
      handler = next
    },

    async close () {
      closed = true
      pending.rejectAll(() => new HeraldError('SERVER_UNAVAILABLE', 'this node is stopping'))
      await subscriber.quit().catch(() => subscriber.disconnect())
    },
  }
}

/** Performs a request of another node through `handler` and makes its reply; never rejects. */
async function replyTo (request: Request, handler: RemoteOpHandler | undefined, node: string, onError: (err: unknown) => void): Promise<Reply> {
  try {
    const done = handler !== undefined && await handler(request.clientId, { op: request.op, args: request.args } as RemoteOp)
    return { id: request.id, result: done ? 'done' : 'absent' }
  } catch (err) {
    // a HeraldError's message is safe to pass on; anything else is logged here, where it happened
    if (err instanceof HeraldError) return { id: request.id, error: { code: err.code, message: err.message } }
    onError(err)
    return { id: request.id, error: { code: 'INTERNAL_ERROR', message: `${request.op} failed on cluster node ${node} (its log says why)` } }
  }
}

function remoteError ({ code, message }: { code: string, message: string }): HeraldError {
  // the cause is what the caller's log shows for an INTERNAL_ERROR
  const cause = new Error(message)
  return Object.hasOwn(errorCodes, code) ? new HeraldError(code as ErrorCode, message, { cause }) : new HeraldError('INTERNAL_ERROR', message, { cause })
}

function isRequest (value: unknown): value is Request {
  const v = value as Partial<Request> | null
  return v !== null && typeof v === 'object' && typeof v.id === 'string' && typeof v.from === 'string' &&
    typeof v.clientId === 'string' && typeof v.op === 'string' && validArgs(v.op, v.args)
}

function validArgs (op: string, value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  const args = value as Record<string, unknown>
  const qos = args.qos === 0 || args.qos === 1
  switch (op) {
    case 'deliverTo': return typeof args.topic === 'string' && Buffer.isBuffer(args.payload) && qos && typeof args.retain === 'boolean'
    case 'subscribe': return typeof args.topic === 'string' && qos
    case 'unsubscribe': return typeof args.topic === 'string'
    case 'deleteSession':
    case 'disconnect': return true
    default: return false
  }
}

function isReply (value: unknown): value is Reply {
  const v = value as Partial<Reply> | null
  return v !== null && typeof v === 'object' && typeof v.id === 'string' &&
    (v.result === 'done' || v.result === 'absent' || (typeof v.error === 'object' && v.error !== null))
}
