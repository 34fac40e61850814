import type { RedisConnection } from '../store/redis/connection.js'

/**
 * This node's lease in Redis, and the watch for other nodes' expired ones.
 *
 * A node holds `node:<id>` with a time to live of `leaseMs`, renewed every
 * third of it, and is listed in `nodes`. A node whose key is gone (killed,
 * hung, cut off from Redis for longer than the lease) is dead to the
 * others: the first node that notices runs the take-over handlers (its
 * presence records are removed; its relay jobs are claimed by the outbox on
 * its own timer) and then removes it from `nodes`.
 */
export interface NodeLease {
  readonly node: string
  /** False once renewing has failed for longer than the lease: other nodes may have taken this node's work. */
  held (): boolean
  /** Runs `handler(deadNode)` for every node found dead; a handler that throws is retried at the next sweep. */
  onNodeDead (handler: (node: string) => Promise<void>): void
  close (): Promise<void>
}

export interface NodeLeaseOptions {
  readonly node: string
  readonly leaseMs: number
  readonly onError?: (err: unknown) => void
  readonly now?: () => number
}

export async function acquireNodeLease (conn: RedisConnection, { node, leaseMs, onError = () => {}, now = Date.now }: NodeLeaseOptions): Promise<NodeLease> {
  const { client } = conn
  const handlers: Array<(node: string) => Promise<void>> = []
  let renewedAt = now()
  let closed = false

  async function renew (): Promise<void> {
    await client.multi().set(`node:${node}`, String(now()), 'PX', leaseMs).sadd('nodes', node).exec()
    renewedAt = now()
  }

  async function sweep (): Promise<void> {
    for (const other of await client.smembers('nodes')) {
      if (other === node || await client.exists(`node:${other}`) === 1) continue
      for (const handler of handlers) await handler(other)
      await client.srem('nodes', other)
    }
  }

  await renew()
  const renewTimer = setInterval(() => { renew().catch(onError) }, Math.max(1, Math.floor(leaseMs / 3)))
  const sweepTimer = setInterval(() => { if (!closed) sweep().catch(onError) }, Math.max(1, Math.floor(leaseMs / 2)))
  renewTimer.unref()
  sweepTimer.unref()

  return {
    node,
    held: () => now() - renewedAt < leaseMs,
    onNodeDead: (handler) => { handlers.push(handler) },
    async close () {
      closed = true
      clearInterval(renewTimer)
      clearInterval(sweepTimer)
      // a clean stop hands over at once instead of after the lease
      await client.multi().del(`node:${node}`).srem('nodes', node).exec().catch(onError)
    },
  }
}
