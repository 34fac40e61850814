import t from 'tap'
import { sign } from '../helpers/broker.js'
import type { ChildBroker } from '../helpers/child-broker.js'
import { startCluster } from '../helpers/cluster.js'
import { connectInbox } from '../helpers/mqtt-inbox.js'
import { within } from '../helpers/within.js'

// Issue 16, item 6: a bucket If-Match race across three herald processes on one redis-server gives exactly one
// winner, and exactly one change event per successful write reaches a subscriber on another node.

const alice = sign({ sub: 'alice' })
const base = '/v1/users/alice/buckets/notes/objects'

async function put (node: ChildBroker | undefined, path: string, body: unknown, headers: Record<string, string>): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${String(node?.ports.http)}${path}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  await response.arrayBuffer()
  return response.status
}

t.test('30 writers of one version on three nodes: one wins, the others get 412, one event per win', async (t) => {
  const { nodes } = await startCluster(t, { nodes: 3 })
  const [a, b, c] = nodes
  const events = await connectInbox(t, `mqtt://127.0.0.1:${String(c?.ports.mqtt)}`, { clientId: 'alice-watch', username: 'alice', password: alice })
  await events.client.subscribeAsync('users/alice/buckets/notes/events', { qos: 1 })

  t.equal(await put(a, `${base}/shared`, { v: 'first' }, { 'if-none-match': '*' }), 201, 'created on node A')
  await within(10_000, 'its event on node C', events.waitFor(1))

  // every writer read version 1 and writes it conditionally, spread over the three nodes
  const statuses = await Promise.all(Array.from({ length: 30 }, async (_, i) => await put(nodes[i % 3], `${base}/shared`, { v: `writer ${i}` }, { 'if-match': '1' })))
  const won = statuses.filter((status) => status === 200)
  t.equal(won.length, 1, `exactly one writer wins (statuses: ${[...new Set(statuses)].join(', ')})`)
  t.equal(statuses.filter((status) => status === 412).length, 29, 'every other one is told its version is stale')

  // a marker write after the race: its event comes after every event of the race
  t.equal(await put(b, `${base}/marker`, { v: 'marker' }, { 'if-none-match': '*' }), 201)
  await within(10_000, 'the marker\'s event', (async () => {
    while (!events.messages.some((m) => m.payload.toString().includes('"marker"'))) await events.waitFor(events.messages.length + 1)
  })())
  const ofShared = events.messages.filter((m) => m.payload.toString().includes('"shared"'))
  t.equal(ofShared.length, 2, 'one event for the creation, one for the single successful write')
})
