/**
 * The admin console's Clients and Installations pages in headless chromium,
 * against a real broker: a device connected with Debian's mosquitto_sub shows
 * up with its session and is disconnected from the page; a user's
 * installations show the token's end only, and one is deleted from the page.
 */
import { spawn } from 'node:child_process'
import t from 'tap'
import { brokerEvent, sign, startBroker } from '../helpers/broker.js'
import { openConsole } from '../helpers/browser.js'
import { api } from '../helpers/http.js'

const admin = sign({ sub: 'root', role: 'admin' })
const alice = sign({ sub: 'alice' })

t.test('a device connected with mosquitto_sub appears on the Clients page with its session, and is disconnected from it', async (t) => {
  const broker = await startBroker(t)
  const subscribed = brokerEvent(broker, 'subscribe', 'alice-laptop')
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', 'alice-laptop', '-c', '-q', '1',
    '-u', 'alice', '-P', alice, '-t', 'users/alice/#'])
  t.teardown(() => { sub.kill() })
  let stderr = ''
  sub.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<never>((_resolve, reject) => sub.once('exit', (code) => reject(new Error(`mosquitto_sub exited (${code}): ${stderr}`))))
  await Promise.race([subscribed, exited])

  const console = await openConsole(t, broker)
  await console.signIn(admin)
  await console.show('clients')
  await console.waitForText('#clients', 'alice-laptop')
  t.match(await console.page.$eval('#clients', (e) => e.textContent), /alice-laptop.*alice.*tcp.*127\.0\.0\.1/)
  await console.screenshot('clients')

  // search by user: nobody else's connection
  await console.fill('#client-search input[name=user]', 'bob')
  await console.page.click('#client-search button[type=submit]')
  await console.waitForText('#clients-total', '0 connected')
  await console.fill('#client-search input[name=user]', 'alice')
  await console.fill('#client-search input[name=search]', 'laptop')
  await console.page.click('#client-search button[type=submit]')
  await console.waitForText('#clients-total', '1 connected')

  await console.clickText('#clients .client-link', 'alice-laptop')
  await console.waitForText('#detail-subscriptions', 'users/alice/#')
  t.equal(await console.page.$eval('#detail-connected', (e) => e.textContent), 'yes')
  t.match(await console.page.$eval('#client-detail', (e) => e.textContent), /Transport\s*tcp.*Address\s*127\.0\.0\.1.*Queued messages\s*0/)
  await console.screenshot('client-detail')

  const gone = brokerEvent(broker, 'clientDisconnect', 'alice-laptop')
  await console.page.click('[data-action=disconnect]')
  await console.page.click('[data-action=disconnect-confirm]')
  await gone
  await console.waitForText('#client-detail', 'Disconnected; its session stays.')
  t.pass('the broker closed its connection')
  const session = await api(broker, 'GET', '/v1/admin/clients/alice-laptop', { token: admin })
  t.match(session.body, { owner: 'alice', session: { subscriptions: [{ topic: 'users/alice/#', qos: 1 }] } }, 'its session stays')

  t.same(console.foreign, [])
  t.same(await console.cspViolations(), [])
  t.same(console.pageErrors, [])
})

t.test('the Installations page shows a user\'s devices with the token\'s end only, and deletes one', async (t) => {
  const broker = await startBroker(t)
  const fcmToken = 'fcm-registration-token-that-is-secret-0123456789'
  const apnsToken = 'a'.repeat(58) + 'fedcba'
  const phone = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken: { provider: 'fcm', token: fcmToken } } })
  const tablet = await api(broker, 'POST', '/v1/installations', { token: alice, body: { pushToken: { provider: 'apns', token: apnsToken, environment: 'development', apnsTopic: 'com.example.app' } } })
  t.equal(phone.status, 201)
  t.equal(tablet.status, 201)

  const console = await openConsole(t, broker)
  await console.signIn(admin)
  await console.show('installations')
  await console.fill('#installation-search input[name=user]', 'alice')
  await console.page.click('#installation-search button[type=submit]')
  await console.page.waitForFunction(() => document.querySelectorAll('#installations tbody tr').length === 2)
  const table = await console.page.$eval('#installations', (e) => e.textContent ?? '')
  t.match(table, /fcm.*…456789/, 'the FCM token\'s end')
  t.match(table, /apns.*…fedcba.*development.*com\.example\.app/, 'the APNs token\'s end, environment and topic')
  const html = await console.page.content()
  t.notOk(html.includes(fcmToken) || html.includes(apnsToken), 'never the whole token')
  await console.screenshot('installations')

  await console.page.click('#installations tbody tr:first-child [data-action=delete-installation]')
  await console.page.click('#installations tbody tr:first-child [data-action=delete-installation-confirm]')
  await console.page.waitForFunction(() => document.querySelectorAll('#installations tbody tr').length === 1)
  const left = await api(broker, 'GET', '/v1/installations?user=alice', { token: admin })
  t.equal(left.body.installations.length, 1, 'one installation deleted')
  t.match(await console.page.$eval('.done', (e) => e.textContent), /deleted/)
  t.same(console.foreign, [])
  t.same(await console.cspViolations(), [])
  t.same(console.pageErrors, [])
})
