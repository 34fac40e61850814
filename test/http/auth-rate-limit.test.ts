import { request } from 'node:http'
import t from 'tap'
import { sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

// Issue 14, item 9: 3,000 requests with a forged token from one IP were all
// verified and answered 401, none counted by any rate limit.

const forged = sign({ sub: 'mallory', role: 'admin' }, { secret: 'not-the-broker-secret-but-32-bytes-long!' })
const alice = sign({ sub: 'alice' })

/** One sample of the Prometheus text at /metrics (0 when the series does not exist yet). */
async function metric (broker: TestBroker, name: string, labels = ''): Promise<number> {
  const text = (await api(broker, 'GET', '/metrics')).text
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `))
  return line === undefined ? 0 : Number(line.slice(`${name}${labels} `.length))
}

/** GET with a bearer token from another loopback address (Linux routes all of 127/8 to lo). */
async function getFrom (localAddress: string, broker: TestBroker, path: string, token: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: broker.ports.http, path, localAddress, headers: { authorization: `Bearer ${token}` }, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('http.authFailureLimit: past the limit an address gets 429 before any token is verified', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { authFailureLimit: { max: 3, windowSec: 60 } } } })

  for (let i = 1; i <= 3; i++) {
    const refused = await api(broker, 'GET', '/v1/installations', { token: forged })
    t.equal(refused.status, 401, `forged token ${i}: 401`)
    t.equal(refused.body.error.code, 'TOKEN_INVALID')
  }
  const limited = await api(broker, 'GET', '/v1/installations', { token: forged })
  t.equal(limited.status, 429, 'the fourth failure in the window: 429')
  t.equal(limited.body.error.code, 'RATE_LIMITED')
  const retryAfter = Number(limited.headers.get('retry-after'))
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After in seconds (${limited.headers.get('retry-after')})`)
  t.notOk(limited.text.includes(forged), 'the token is not echoed')

  const valid = await api(broker, 'GET', '/v1/installations', { token: alice })
  t.equal(valid.status, 429, 'a valid token from that address waits too: nothing is verified until the window ends')

  t.equal(await metric(broker, 'herald_auth_failures_total', '{transport="http",code="TOKEN_INVALID"}'), 3, 'only the first three tokens were verified')
  t.equal(await metric(broker, 'herald_http_auth_rate_limited_total'), 2, 'the refusals are counted')
  t.equal((await api(broker, 'GET', '/healthz')).status, 200, 'unauthenticated endpoints still answer')
  t.equal(await getFrom('127.0.0.2', broker, '/v1/installations', alice), 200, 'another address is not affected')
})

t.test('http.rateLimit counts requests refused 401 too', async (t) => {
  const broker = await startBroker(t, { overrides: { http: { rateLimit: { max: 4, windowSec: 60 }, authFailureLimit: { max: 1000, windowSec: 60 } } } })
  for (let i = 1; i <= 4; i++) {
    t.equal((await api(broker, 'GET', '/v1/installations', { token: forged })).status, 401, `forged token ${i}: 401`)
  }
  const limited = await api(broker, 'GET', '/v1/installations', { token: forged })
  t.equal(limited.status, 429, 'the fifth request of the window: 429')
  t.equal(limited.body.error.code, 'RATE_LIMITED')
  t.ok(limited.headers.get('retry-after') !== null, 'with Retry-After')
  t.equal(await metric(broker, 'herald_auth_failures_total', '{transport="http",code="TOKEN_INVALID"}'), 4, 'the fifth token was not verified')
})
