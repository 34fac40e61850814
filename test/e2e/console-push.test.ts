/**
 * The admin console's operating pages in headless chromium: an app topic
 * created, its ACL edited and a topic deleted on the App topics page; a push
 * sent from the form reaches Debian's mosquitto_sub; a relay dead letter,
 * inspected and replayed from the page, reaches the fake APNs through
 * Herald's real @parse/node-apn.
 */
import t from 'tap'
import { sign, startBroker } from '../helpers/broker.js'
import { openConsole } from '../helpers/browser.js'
import { mosquittoSubOne } from '../helpers/mosquitto-sub.js'
import { api } from '../helpers/http.js'
import { apnsDeviceToken, startProviderFakes } from '../helpers/providers.js'

const admin = sign({ sub: 'root', role: 'admin' })

t.test('app topics are created, edited and deleted, and a push sent from the form reaches mosquitto_sub', async (t) => {
  const broker = await startBroker(t)
  const console = await openConsole(t, broker)
  await console.signIn(admin)

  await console.show('topics')
  for (const name of ['news', 'scratch']) {
    await console.fill('#topic-form input[name=name]', name)
    await console.page.click('#topic-form button[type=submit]')
    await console.waitForText('#topics', `app/${name}`)
  }
  await console.clickText('#topics tr', 'app/news')
  await console.page.click('#topics tbody tr:first-child [data-action=edit-topic]')
  await console.page.waitForFunction(() => (document.querySelector('#topic-form input[name=name]') as HTMLInputElement | null)?.readOnly === true)
  await console.fill('#topic-form input[name=subscribe]', 'authenticated group:ops')
  await console.page.click('#topic-form button[type=submit]')
  await console.waitForText('#topics', 'authenticated group:ops')
  t.same((await api(broker, 'GET', '/v1/topics/news', { token: admin })).body.acl, { subscribe: ['authenticated', 'group:ops'], publish: ['role:service', 'role:admin'] }, 'the ACL was replaced')
  await console.page.click('#topics tbody tr:last-child [data-action=delete-topic]')
  await console.page.click('#topics tbody tr:last-child [data-action=delete-topic-confirm]')
  await console.page.waitForFunction(() => document.querySelectorAll('#topics tbody tr').length === 1)
  t.equal((await api(broker, 'GET', '/v1/topics/scratch', { token: admin })).status, 404, 'deleted')
  await console.screenshot('topics')

  const carol = await mosquittoSubOne(t, broker, { clientId: 'carol-sub', token: sign({ sub: 'carol' }), topic: 'app/news', qos: 1 })

  await console.show('push')
  await console.fill('#push-form input[name=target]', 'app/news')
  await console.fill('#push-form input[name=title]', 'Hello from the console')
  await console.fill('#push-form input[name=body]', 'Héllo ✓')
  await console.fill('#push-form textarea[name=data]', 'article=42\nkind=breaking')
  await console.fill('#push-form textarea[name=apns]', '{"sound": "default"}')
  await console.waitForText('#push-preview', '"kind": "breaking"')
  const preview = JSON.parse(await console.page.$eval('#push-preview', (e) => e.textContent ?? ''))
  t.same(preview, { to: { topic: 'app/news' }, notification: { title: 'Hello from the console', body: 'Héllo ✓' }, data: { article: '42', kind: 'breaking' }, apns: { sound: 'default' } }, 'the JSON shown is the request')
  await console.page.click('#push-form button[type=submit]')
  await console.page.waitForSelector('#push-answer')
  const answer = JSON.parse(await console.page.$eval('#push-answer', (e) => e.textContent ?? ''))
  t.type(answer.id, 'string', 'the answer: the message id')

  const envelope = JSON.parse(await carol.message)
  t.match(envelope, { id: answer.id, topic: 'app/news', notification: { title: 'Hello from the console', body: 'Héllo ✓' }, data: { article: '42', kind: 'breaking' } })
  await console.screenshot('push')

  // a refused push shows Herald's error
  await console.page.select('#push-form select[name=kind]', 'installation')
  await console.fill('#push-form input[name=target]', 'no-such-device')
  await console.page.click('#push-form button[type=submit]')
  await console.waitForText('.error', '404 NOT_FOUND')
  t.same(console.foreign, [])
  t.same(await console.cspViolations(), [])
  t.same(console.pageErrors, [])
})

t.test('dead letters are inspected, replayed and purged from the page; the fake APNs receives the replayed one only', async (t) => {
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: { ...fakes.push, maxAttempts: 2 } } })
  const token = apnsDeviceToken()
  const created = await api(broker, 'POST', '/v1/installations', { token: sign({ sub: 'alice' }), body: { mqtt: false, pushToken: { provider: 'apns', token } } })
  t.equal(created.status, 201)
  fakes.apns.respond(token, { status: 503, reason: 'ServiceUnavailable', times: 4 })
  for (let i = 0; i < 2; i++) t.equal((await api(broker, 'POST', '/v1/push', { token: admin, body: { to: { user: 'alice' }, notification: { title: 'Try again' }, data: { order: '42' } } })).status, 202)
  await broker.server.relay?.drain()
  t.equal(fakes.apns.requests.length, 4, 'APNs refused both attempts of both')

  const console = await openConsole(t, broker)
  await console.signIn(admin)
  await console.show('dead-letters')
  await console.waitForText('#dead-letters-total', '2')
  await console.page.click('#dead-letters .inspect')
  await console.waitForText('#dead-letter-reason', 'ServiceUnavailable')
  t.match(JSON.parse(await console.page.$eval('#dead-letter-content', (e) => e.textContent ?? '')), { kind: 'push', notification: { title: 'Try again' }, data: { order: '42' } })
  t.notOk((await console.page.content()).includes(token), 'never the push token')
  await console.screenshot('dead-letters')

  await console.page.click('#dead-letters tbody tr:first-child [data-action=replay]')
  const [, , , , fifth] = await fakes.apns.waitForRequests(5)
  await broker.server.relay?.drain()
  t.equal(fifth?.status, 200, 'delivered on replay')
  t.equal(fifth?.token, token)
  t.match(fifth?.json, { aps: { alert: { title: 'Try again' } }, order: '42' })
  await console.waitForText('#dead-letters-total', '1')

  await console.page.click('#dead-letters tbody tr:first-child [data-action=purge]')
  await console.page.click('#dead-letters tbody tr:first-child [data-action=purge-confirm]')
  await console.waitForText('#dead-letters-total', '0')
  t.equal((await api(broker, 'GET', '/v1/admin/dead-letters', { token: admin })).body.total, 0, 'purged')
  await broker.server.relay?.drain()
  t.equal(fakes.apns.requests.length, 5, 'the purged one was never sent')
  t.same(console.foreign, [])
  t.same(await console.cspViolations(), [])
  t.same(console.pageErrors, [])
})
