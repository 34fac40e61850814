import { Redis, type RedisOptions } from 'ioredis'

/**
 * The Redis a cluster shares. Every key and channel Herald uses is under
 * `keyPrefix` (`cluster.keyPrefix`), so one Redis can serve several
 * deployments: commands get it from ioredis' `keyPrefix` (keys, and KEYS of
 * Lua scripts), channels from `channel()` (ioredis does not prefix them).
 */
export interface RedisConnection {
  /** Commands; keys are prefixed for you. Fails commands at once while Redis is unreachable (no offline queue beyond a reconnect). */
  readonly client: Redis
  readonly keyPrefix: string
  /** The prefixed name of a pub/sub channel. */
  channel (name: string): string
  /** A new connection with the same settings, for SUBSCRIBE (a subscribed connection takes no other command); closed by close(). */
  subscriber (): Redis
  /** The url without its password, for logs and errors. */
  readonly safeUrl: string
  close (): Promise<void>
}

export interface RedisConnectionOptions {
  readonly url: string
  readonly keyPrefix: string
  /** How long a command may wait for a connection before it fails; commands never pile up while Redis is gone. */
  readonly commandTimeoutMs?: number
}

/** `redis://user:secret@host` → `redis://user:***@host`: a url in a log or an error never carries the password. */
export function redactRedisUrl (url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'redis://(unparsable url)'
  }
}

/**
 * Connects, and resolves once Redis answers; rejects with an error naming the
 * (redacted) url when it does not within `connectTimeoutMs`. After that,
 * ioredis reconnects by itself, forever, with a capped backoff.
 */
export async function openRedisConnection ({ url, keyPrefix, commandTimeoutMs = 5000 }: RedisConnectionOptions, connectTimeoutMs = 5000): Promise<RedisConnection> {
  const safeUrl = redactRedisUrl(url)
  const options: RedisOptions = {
    keyPrefix,
    lazyConnect: true,
    // a command issued while Redis is away fails after one reconnect attempt instead of queueing without end
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
  }
  const subscribers: Redis[] = []
  const client = new Redis(url, options)
  // ioredis emits 'error' on every failed reconnect; the readiness check reports the state instead
  client.on('error', () => {})
  try {
    await withTimeout(client.connect(), connectTimeoutMs)
    await client.ping()
  } catch (err) {
    client.disconnect()
    throw new Error(`cluster.redis.url: cannot reach Redis at ${safeUrl} (${(err as Error).message})`, { cause: err })
  }
  return {
    client,
    keyPrefix,
    safeUrl,
    channel: (name) => `${keyPrefix}${name}`,
    subscriber () {
      // a subscriber keeps its subscriptions across reconnects (ioredis re-subscribes) and never times commands out
      const sub = new Redis(url, { ...options, lazyConnect: false, commandTimeout: undefined, maxRetriesPerRequest: null })
      sub.on('error', () => {})
      subscribers.push(sub)
      return sub
    },
    async close () {
      await Promise.all([client, ...subscribers].map(async (c) => {
        try {
          await c.quit()
        } catch {
          c.disconnect()
        }
      }))
    },
  }
}

async function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
