/**
 * An empty body is no body, whatever its Content-Type says (issue 13, item 3).
 * fetch wrappers, axios defaults and many SDKs send `Content-Type: application/json`
 * on every request, DELETE included. Sent with node:http so the framing is exact:
 * no length header at all, `Content-Length: 0`, or a chunked body with no chunk.
 */
import { request } from 'node:http'
import t from 'tap'
import { sign, startBroker, type TestBroker } from '../helpers/broker.js'
import { api } from '../helpers/http.js'

interface RawResponse { readonly status: number, readonly body: any }

type Framing = 'no length header' | 'Content-Length: 0' | 'empty chunked body'
const FRAMINGS: readonly Framing[] = ['no length header', 'Content-Length: 0', 'empty chunked body']

/** One request over a real socket, with `Content-Type: application/json` and the given body and framing. */
async function raw (broker: TestBroker, method: string, path: string, token: string, body: string, framing: Framing): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: broker.ports.http, method, path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    // node:http frames a body itself unless told: pin each framing down
    if (framing === 'Content-Length: 0' || (framing === 'no length header' && body !== '')) req.setHeader('content-length', Buffer.byteLength(body))
    else if (framing === 'empty chunked body') req.setHeader('transfer-encoding', 'chunked')
    else req.useChunkedEncodingByDefault = false
    req.end(body)
  })
}

t.test('an empty JSON-typed body counts as no body on every route that takes none', async (t) => {
  const broker = await startBroker(t)
  const alice = sign({ sub: 'alice' })

  for (const framing of FRAMINGS) {
    await t.test(framing, async (t) => {
      // the README's registration with no body at all
      const created = await raw(broker, 'POST', '/v1/installations', alice, '', framing)
      t.equal(created.status, 201, 'POST /v1/installations')
      const id = created.body?.installationId as string
      t.type(id, 'string')

      const subscribed = await raw(broker, 'PUT', `/v1/installations/${id}/subscriptions/users/alice/news`, alice, '', framing)
      t.equal(subscribed.status, 200, 'PUT .../subscriptions/...')
      t.strictSame(subscribed.body, { topic: 'users/alice/news', qos: 1 })

      const note = await api(broker, 'POST', '/v1/users/me/buckets/notes/objects', { token: alice, body: { title: 'hi' } })
      t.equal(note.status, 201)
      const deleted = await raw(broker, 'DELETE', `/v1/users/alice/buckets/notes/objects/${note.body.id as string}`, alice, '', framing)
      t.equal(deleted.status, 204, 'DELETE .../buckets/notes/objects/{id}')
      t.equal((await api(broker, 'GET', `/v1/users/alice/buckets/notes/objects/${note.body.id as string}`, { token: alice })).status, 404, 'the object is gone')

      const removed = await raw(broker, 'DELETE', `/v1/installations/${id}`, alice, '', framing)
      t.equal(removed.status, 204, 'DELETE /v1/installations/{id}')
      t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).status, 404, 'the installation is gone')
    })
  }
})

t.test('a body that is not empty must still be JSON', async (t) => {
  const broker = await startBroker(t)
  const alice = sign({ sub: 'alice' })
  const id = (await api(broker, 'POST', '/v1/installations', { token: alice })).body.installationId as string
  const note = (await api(broker, 'POST', '/v1/users/me/buckets/notes/objects', { token: alice, body: { title: 'hi' } })).body.id as string
  const routes: Array<[string, string]> = [
    ['POST', '/v1/installations'],
    ['PUT', `/v1/installations/${id}/subscriptions/users/alice/news`],
    ['DELETE', `/v1/users/alice/buckets/notes/objects/${note}`],
    ['DELETE', `/v1/installations/${id}`],
  ]
  for (const [method, path] of routes) {
    for (const body of ['{', ' ']) {
      const res = await raw(broker, method, path, alice, body, 'no length header')
      t.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`)
      t.equal(res.body?.error?.code, 'INVALID_JSON')
    }
  }
  // nothing was done by the refused requests
  t.equal((await api(broker, 'GET', `/v1/installations/${id}`, { token: alice })).status, 200)
  t.equal((await api(broker, 'GET', `/v1/users/alice/buckets/notes/objects/${note}`, { token: alice })).status, 200)
})

t.test('a route that needs a body says which field is missing, not that JSON is invalid', async (t) => {
  const broker = await startBroker(t)
  const service = sign({ sub: 'svc', role: 'service' })
  for (const framing of FRAMINGS) {
    const res = await raw(broker, 'POST', '/v1/publish', service, '', framing)
    t.equal(res.status, 400, framing)
    t.equal(res.body?.error?.code, 'INVALID_REQUEST', framing)
  }
})
