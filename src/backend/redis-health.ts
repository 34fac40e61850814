import type { Redis } from 'ioredis'

/**
 * Whether the cluster's Redis answers, now, without waiting for it.
 *
 * ioredis' status tells when the connection is gone (Redis killed or
 * restarted: the socket closes at once), not when Redis stops answering over
 * a connection that stays open (a hung or paused redis-server, a network cut
 * that sends nothing back): every command then waits for its timeout (5 s,
 * store/redis/connection.ts). A PING every `everyMs` tells that too: once
 * none has been answered for `silentMs`, Redis counts as lost, and the next
 * answer, or a reconnect's first, ends it. CONNECT, the HTTP API and
 * `/readyz` ask `problem()` before they wait for anything (StorageBackend).
 */
export interface RedisHealth {
  /** Why Redis cannot be used now, or null while it answers. */
  problem (): string | null
  close (): void
}

export interface RedisHealthOptions {
  readonly everyMs?: number
  /** longer than any command Redis answers in normal work (an fsync stall, a large script), well under the command timeout */
  readonly silentMs?: number
  readonly now?: () => number
}

export function watchRedis (client: Redis, { everyMs = 500, silentMs = 2000, now = Date.now }: RedisHealthOptions = {}): RedisHealth {
  let answeredAt = now()
  const ping = (): void => {
    // no PING queued while the connection is down: a reconnect sends one of its own ('ready')
    if (client.status !== 'ready') return
    client.ping().then(() => { answeredAt = now() }, () => {})
  }
  const timer = setInterval(ping, everyMs)
  timer.unref()
  client.on('ready', ping)
  return {
    problem () {
      if (client.status !== 'ready') return `the connection to Redis is down (${client.status})`
      const silent = now() - answeredAt
      return silent > silentMs ? `Redis has not answered for ${silent} ms` : null
    },
    close () {
      clearInterval(timer)
      client.off('ready', ping)
    },
  }
}
