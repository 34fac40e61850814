import { once } from 'node:events'
import t from 'tap'
import rateLimit from '@fastify/rate-limit'
import Fastify from 'fastify'
import { createConnectLimiter, type ConnectLimiter } from '../../src/broker/connect-limiter.js'
import { errorCodes } from '../../src/errors/codes.js'
import { createAuthFailureLimiter } from '../../src/http/auth-failure-limiter.js'
import { rateLimitStore } from '../../src/http/rate-limit-store.js'
import type { RateLimiters } from '../../src/store/rate-limiters.js'
import { openRedisConnection } from '../../src/store/redis/connection.js'
import { redisRateLimiters } from '../../src/store/redis/rate-limiters.js'
import { connackCode, sign, startBroker, type Teardown, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'
import { startRedis, type TestRedis } from '../helpers/redis.js'

// Issue 16: limits.connectRatePerIp, http.rateLimit and http.authFailureLimit
// count an address's attempts on every node of a cluster together (Redis), and
// per node while Redis is unreachable. Every client here comes from 127.0.0.1.

const alice = sign({ sub: 'alice' })
const forged = sign({ sub: 'mallory' }, { secret: 'not-the-broker-secret-but-32-bytes-long!' })
const RATE_LIMITED = errorCodes.RATE_LIMITED.connack

async function node (t: Teardown, redis: TestRedis, nodeId: string, overrides: Record<string, unknown>): Promise<TestBroker> {
  return await startBroker(t, { captureLogs: true, overrides: { ...overrides, cluster: { redis: { url: redis.url }, nodeId } } })
}

/** The codes of the CONNECTs this node refused, in order (hooks.ts logs each one before it answers). */
function refusals (broker: TestBroker): unknown[] {
  return broker.logs.filter((line) => line.msg === 'connection refused').map((line) => line.code)
}

const limits = { limits: { connectRatePerIp: { points: 5, windowSec: 60 } } }

t.test('limits.connectRatePerIp counts the CONNECTs of an address on every node', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, 'a', limits)
  const b = await node(t, redis, 'b', limits)
  for (let n = 1; n <= 3; n++) {
    t.equal(await connackCode(a.mqttUrl, { clientId: `a-${n}`, password: alice }), 0, `node A, attempt ${n}: accepted`)
  }
  for (let n = 1; n <= 2; n++) {
    t.equal(await connackCode(b.mqttUrl, { clientId: `b-${n}`, password: alice }), 0, `node B, attempt ${n}: accepted`)
  }
  t.equal(await connackCode(b.mqttUrl, { clientId: 'b-3', password: alice }), RATE_LIMITED, 'the sixth attempt of the address, the third on node B: refused')
  t.same(refusals(b), ['RATE_LIMITED'], 'refused for the rate limit')
  t.equal(await connackCode(a.mqttUrl, { clientId: 'a-4', password: alice }), RATE_LIMITED, 'and on node A too')
  t.same(refusals(a), ['RATE_LIMITED'])
  t.ok(Number(await redis.client().get('herald:rl:connect:127.0.0.1')) >= 6, 'the count is in Redis under the cluster prefix')
})

t.test('http.rateLimit counts the requests of an address on every node', async (t) => {
  const redis = await startRedis(t)
  const overrides = { http: { rateLimit: { max: 4, windowSec: 60 } } }
  const a = await node(t, redis, 'a', overrides)
  const b = await node(t, redis, 'b', overrides)
  t.equal((await api(a, 'GET', '/v1/installations', { token: alice })).status, 200, 'node A, request 1')
  t.equal((await api(b, 'GET', '/v1/installations', { token: alice })).status, 200, 'node B, request 2')
  t.equal((await api(a, 'GET', '/v1/installations', { token: alice })).status, 200, 'node A, request 3')
  t.equal((await api(b, 'GET', '/v1/installations', { token: alice })).status, 200, 'node B, request 4')
  for (const [name, broker] of [['B', b], ['A', a]] as const) {
    const limited = await api(broker, 'GET', '/v1/installations', { token: alice })
    t.equal(limited.status, 429, `node ${name}: over the limit of the address`)
    t.equal(limited.body.error.code, 'RATE_LIMITED')
    const retryAfter = Number(limited.headers.get('retry-after'))
    t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After in seconds (${String(retryAfter)})`)
  }
})

t.test('http.authFailureLimit counts the failed authentications of an address on every node', async (t) => {
  const redis = await startRedis(t)
  const overrides = { http: { authFailureLimit: { max: 3, windowSec: 60 } } }
  const a = await node(t, redis, 'a', overrides)
  const b = await node(t, redis, 'b', overrides)
  t.equal((await api(a, 'GET', '/v1/installations', { token: forged })).status, 401, 'node A, failure 1')
  t.equal((await api(b, 'GET', '/v1/installations', { token: forged })).status, 401, 'node B, failure 2')
  t.equal((await api(a, 'GET', '/v1/installations', { token: forged })).status, 401, 'node A, failure 3')
  const limited = await api(b, 'GET', '/v1/installations', { token: alice })
  t.equal(limited.status, 429, 'node B refuses even a valid token from that address')
  t.equal(limited.body.error.code, 'RATE_LIMITED')
})

t.test('with Redis unreachable, each node counts in its own memory: nothing fails, the limits hold per node', async (t) => {
  // At the limiters themselves: a node that knows Redis is lost refuses CONNECTs and /v1 requests
  // before any limit is asked (STORE_UNREACHABLE); the memory fallback answers the attempts that
  // reach a limiter meanwhile, before the loss is noticed or while a command fails.
  const redis = await startRedis(t)
  const nodes = await Promise.all(['a', 'b'].map(async () => {
    const conn = await openRedisConnection({ url: redis.url, keyPrefix: 'herald:' })
    t.teardown(async () => await conn.close())
    const limiters = redisRateLimiters(conn)
    return { conn, connect: createConnectLimiter(5, 60, limiters), auth: createAuthFailureLimiter(2, 60, limiters), http: await httpApp(t, limiters, 3) }
  }))
  const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
  t.same(await attempts(a.connect, 3), [true, true, true], 'node A, while Redis answers')
  t.same(await attempts(b.connect, 3), [true, true, false], 'node B: the sixth attempt of the address is refused')
  await a.auth.failed('127.0.0.1')
  await b.auth.failed('127.0.0.1')
  t.ok(await a.auth.blockedFor('127.0.0.1') > 0, 'two failures, one on each node: blocked')
  t.same(await requests(a.http, 2), [200, 200], 'HTTP on node A')
  t.same(await requests(b.http, 2), [200, 429], 'HTTP on node B: the fourth request of the address is over the limit')

  await redis.stop()
  await Promise.all(nodes.map(async ({ conn }) => { if (conn.client.status === 'ready') await once(conn.client, 'close') }))
  t.same(await attempts(a.connect, 6), [true, true, true, true, true, false], 'node A counts from nothing in its memory: five, then refused')
  t.same(await attempts(b.connect, 6), [true, true, true, true, true, false], 'node B apart from A')
  t.equal(await a.auth.blockedFor('127.0.0.1'), 0, 'the failures counted in Redis are not known to the memory')
  await a.auth.failed('127.0.0.1')
  await a.auth.failed('127.0.0.1')
  t.ok(await a.auth.blockedFor('127.0.0.1') > 0, 'two failures on node A: blocked there')
  t.equal(await b.auth.blockedFor('127.0.0.1'), 0, 'not on node B')
  t.same(await requests(a.http, 4), [200, 200, 200, 429], 'HTTP on node A: its own three, then 429')
  t.same(await requests(b.http, 1), [200], 'HTTP on node B counts apart')
})

async function attempts (limiter: ConnectLimiter, n: number): Promise<boolean[]> {
  const results: boolean[] = []
  for (let i = 0; i < n; i++) results.push(await limiter.tryConnect('127.0.0.1'))
  return results
}

/** @fastify/rate-limit with Herald's store over `limiters`, on a real socket. */
async function httpApp (t: Teardown, limiters: RateLimiters, max: number): Promise<string> {
  const app = Fastify()
  await app.register(rateLimit, { max, timeWindow: 60_000, store: rateLimitStore(limiters, 'http') })
  app.get('/', async () => ({ ok: true }))
  t.teardown(async () => await app.close())
  return await app.listen({ port: 0, host: '127.0.0.1' })
}

async function requests (url: string, n: number): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i++) {
    const response = await fetch(url)
    await response.text()
    statuses.push(response.status)
  }
  return statuses
}
