import t from 'tap'
import { HeraldError } from '../../src/errors/index.js'
import { buildHttpApp } from '../../src/http/app.js'
import type { InstallationStore } from '../../src/store/installations.js'
import { sign } from '../helpers/broker.js'
import { assertError, buildRouteApp, type RouteResponse } from '../helpers/route-app.js'

// A cluster node that lost its Redis (HttpContext.unavailable: STORE_UNREACHABLE)
// answers every /v1 request 503 at once, before the rate limit and the token
// check (both may count in Redis) and before the route, which would wait for
// Redis; a request that failed because Redis went away meanwhile is a 503 too,
// not a 500. The end-to-end version, with three nodes and a real redis-server,
// is test/e2e/cluster-faults.test.ts.

const alice = sign({ sub: 'alice' })

t.test('while the store is unreachable: every /v1 request 503 STORE_UNREACHABLE at once, health and metrics still answer', async (t) => {
  const { ctx } = await buildRouteApp(t)
  let lost: HeraldError | null = new HeraldError('STORE_UNREACHABLE', 'Redis (cluster.redis.url) is lost: the connection to Redis is down (reconnecting)')
  const app = await buildHttpApp({ ...ctx, unavailable: () => lost })
  t.teardown(async () => await app.close())
  const call = async (method: 'GET' | 'POST', url: string, token?: string): Promise<RouteResponse> => {
    const response = await app.inject({ method, url, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
    return { status: response.statusCode, headers: response.headers, body: response.json(), text: response.body }
  }

  for (const [method, url] of [['GET', '/v1/installations'], ['POST', '/v1/publish'], ['GET', '/v1/topics']] as const) {
    const refused = await call(method, url, alice)
    assertError(t, refused, 'STORE_UNREACHABLE', `${method} ${url}`)
    t.equal(refused.headers['retry-after'], '5', 'with Retry-After')
  }
  assertError(t, await call('GET', '/v1/installations'), 'STORE_UNREACHABLE', 'without a token: 503 before 401')
  t.equal((await call('GET', '/healthz')).status, 200, '/healthz: the process answers')
  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200, '/metrics answers')

  lost = null
  t.equal((await call('GET', '/v1/installations', alice)).status, 200, 'served again once the store answers')
})

t.test('a request that fails because the store was lost meanwhile: 503, not 500', async (t) => {
  const { ctx } = await buildRouteApp(t)
  let lost: HeraldError | null = null
  const installations: InstallationStore = {
    ...ctx.installations,
    listByOwner: async () => {
      // Redis goes away while the request waits for it
      lost = new HeraldError('STORE_UNREACHABLE')
      throw new Error('Connection is closed.')
    },
  }
  const app = await buildHttpApp({ ...ctx, installations, unavailable: () => lost })
  t.teardown(async () => await app.close())
  const response = await app.inject({ method: 'GET', url: '/v1/installations', headers: { authorization: `Bearer ${alice}` } })
  assertError(t, { status: response.statusCode, headers: response.headers, body: response.json(), text: response.body }, 'STORE_UNREACHABLE', 'the failed request')

  lost = null
  const failing: InstallationStore = { ...ctx.installations, listByOwner: async () => { throw new Error('a bug') } }
  const healthy = await buildHttpApp({ ...ctx, installations: failing, unavailable: () => null })
  t.teardown(async () => await healthy.close())
  const bug = await healthy.inject({ method: 'GET', url: '/v1/installations', headers: { authorization: `Bearer ${alice}` } })
  t.equal(bug.statusCode, 500, 'with the store available, an unexpected error stays a 500')
})
