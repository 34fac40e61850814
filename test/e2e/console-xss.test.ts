/**
 * Strings from devices and users are text in the admin console, never markup:
 * `<img src=x onerror=alert(1)>` and `"><script>` stored in a client id, a
 * user id, topics, payloads, installation fields, an ACL and bucket objects
 * show literally on every page, and no script of theirs runs (no dialog, no
 * window flag, no element made from them, no CSP violation).
 */
import t, { type Test } from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { openConsole, type ConsoleBrowser } from '../helpers/browser.js'
import { api } from '../helpers/http.js'
import { startProviderFakes } from '../helpers/providers.js'

const IMG = '<img src=x onerror=alert(1)>'
const SCRIPT = '"><script>'
// where a slash is allowed: a script that would set a flag
const FLAG = '"><script>window.pwned=1</script><svg onload="window.pwned=2">'
const admin = sign({ sub: 'root', role: 'admin' })
// a user id may hold anything but / + # NUL and a leading $: both strings are valid ids
const user = SCRIPT
const userToken = sign({ sub: user })

/** Nothing the stored strings hold became an element or ran, and `texts` show literally. */
async function inert (t: Test, console: ConsoleBrowser, where: string, texts: string[]): Promise<void> {
  const page = await console.page.evaluate(() => ({
    text: document.body.innerText,
    injected: document.querySelectorAll('#app img, #app script, #app svg:not(.u-over svg)').length,
    pwned: (window as unknown as { pwned?: unknown }).pwned ?? null,
  }))
  for (const text of texts) t.ok(page.text.includes(text), `${where}: ${JSON.stringify(text)} shows literally`)
  t.equal(page.injected, 0, `${where}: no element made from stored strings`)
  t.equal(page.pwned, null, `${where}: no injected script ran`)
  t.same(console.dialogs, [], `${where}: no dialog opened`)
  t.same(await console.cspViolations(), [], `${where}: no CSP violation`)
}

t.test('stored strings render as text on every page', async (t) => {
  const fakes = await startProviderFakes(t)
  const broker = await startBroker(t, { overrides: { push: { ...fakes.push, maxAttempts: 1 } } })

  // a client id and a subscription topic
  const device = await connect(t, broker.mqttUrl, { clientId: IMG, clean: false, username: 'x', password: userToken })
  await device.subscribeAsync(`users/${user}/${IMG}`, { qos: 1 })
  // an installation with strings in its fields, whose relay fails: dead letters with the payloads
  const fcmToken = `fcm-token-${IMG}`
  fakes.fcm.script(fcmToken, 'INTERNAL')
  const created = await api(broker, 'POST', '/v1/installations', { token: userToken, body: { mqtt: false, pushToken: { provider: 'fcm', token: fcmToken, apnsTopic: IMG } } })
  t.equal(created.status, 201)
  t.equal((await api(broker, 'POST', '/v1/push', { token: admin, body: { to: { user }, notification: { title: IMG, body: FLAG }, data: { html: FLAG } } })).status, 202)
  t.equal((await api(broker, 'POST', '/v1/publish', { token: admin, body: { topic: `users/${user}/inbox`, payload: `${FLAG} ${IMG}`, qos: 1 } })).status, 202)
  await broker.server.relay?.drain()
  // an ACL entry, and bucket objects
  t.equal((await api(broker, 'PUT', '/v1/topics/news', { token: admin, body: { acl: { subscribe: [`user:${IMG}`], publish: [`user:${SCRIPT}`] } } })).status, 201)
  t.equal((await api(broker, 'PUT', '/v1/app/buckets/shared', { token: admin, body: { acl: { read: [`user:${IMG}`] } } })).status, 201)
  t.equal((await api(broker, 'POST', `/v1/users/${encodeURIComponent(user)}/buckets/notes/objects?id=n1`, { token: userToken, body: { html: IMG, script: FLAG, nested: { [IMG]: [SCRIPT] } } })).status, 201)

  const console = await openConsole(t, broker)
  await console.signIn(admin)

  await console.show('clients')
  await console.waitForText('#clients', IMG)
  await console.clickText('#clients .client-link', IMG)
  await console.waitForText('#detail-subscriptions', `users/${user}/${IMG}`)
  await inert(t, console, 'clients', [IMG, user, `users/${user}/${IMG}`])

  await console.show('installations')
  await console.fill('#installation-search input[name=user]', user)
  await console.page.click('#installation-search button[type=submit]')
  await console.page.waitForSelector('#installations tbody tr')
  await inert(t, console, 'installations', [IMG, `installation(s) of ${user}`, `…${fcmToken.slice(-6)}`])

  await console.show('topics')
  await console.waitForText('#topics', 'app/news')
  await inert(t, console, 'topics', [`user:${IMG}`, `user:${SCRIPT}`])

  await console.show('dead-letters')
  await console.waitForText('#dead-letters-total', '2')
  const contents: string[] = []
  for (const n of [1, 2]) {
    await console.page.click(`#dead-letters tbody tr:nth-child(${n}) .inspect`)
    await console.page.waitForFunction((row) => document.querySelector('#dead-letter-detail h2')?.textContent?.includes(row) === true, {}, await console.page.$eval(`#dead-letters tbody tr:nth-child(${n})`, (e) => e.getAttribute('data-id') ?? ''))
    await console.page.waitForSelector('#dead-letter-content')
    await inert(t, console, `dead letter ${n}`, [`users/${user}/inbox`])
    contents.push(await console.page.$eval('#dead-letter-content', (e) => e.textContent ?? ''))
  }
  // the push's notification and data, and the raw publish's payload, each JSON-escaped as the page shows them
  const escaped = (text: string): string => JSON.stringify(text).slice(1, -1)
  t.ok(contents.some((c) => c.includes(escaped(IMG)) && c.includes(escaped(FLAG)) && c.includes('"kind": "push"')), 'the push\'s title and data show literally', { contents })
  t.ok(contents.some((c) => c.includes(escaped(`${FLAG} ${IMG}`)) && c.includes('"kind": "raw"')), 'the raw payload shows literally', { contents })

  await console.show('buckets')
  await console.waitForText('#buckets', 'shared')
  await inert(t, console, 'app buckets', [`user:${IMG}`])
  await console.fill('#bucket-scope input[name=scope]', `users/${user}`)
  await console.page.click('#bucket-scope button[type=submit]')
  await console.clickText('#buckets .bucket-link', 'notes')
  await console.page.waitForSelector('#bucket-objects pre')
  await inert(t, console, 'bucket objects', [JSON.stringify(IMG).slice(1, -1), JSON.stringify(FLAG).slice(1, -1), user])
  await console.screenshot('buckets')

  await console.show('push')
  await console.fill('#push-form input[name=title]', IMG)
  await console.fill('#push-form input[name=target]', FLAG)
  await console.waitForText('#push-preview', IMG)
  await inert(t, console, 'push preview', [IMG])

  t.same(console.foreign, [], 'no request left Herald (an <img src=x> would have loaded x)')
  t.same(console.pageErrors, [])
})
