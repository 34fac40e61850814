/**
 * The admin console (issue 19) in headless chromium: who gets in, where the
 * token is kept, the Content-Security-Policy, and that no page needs any
 * origin but Herald's.
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { connect, sign, startBroker } from '../helpers/broker.js'
import { openConsole } from '../helpers/browser.js'
import { api } from '../helpers/http.js'

const admin = sign({ sub: 'root', role: 'admin' })
const pages = ['overview', 'clients', 'installations', 'topics', 'push', 'dead-letters', 'buckets']

t.test('an admin signs in; the token stays in sessionStorage; every page loads from Herald alone, within its CSP', async (t) => {
  const broker = await startBroker(t)
  const console = await openConsole(t, broker)

  const served = await fetch(`${console.origin}/admin`)
  t.equal(served.status, 200)
  const csp = served.headers.get('content-security-policy') ?? ''
  t.match(csp, /default-src 'self'/)
  t.match(csp, /script-src 'self'(;|$)/, 'no inline script, no other origin')
  t.match(csp, /style-src 'self'(;|$)/, 'no inline style either')
  t.notMatch(csp, /unsafe|https?:|\*/, 'nothing but self')
  for (const asset of ['/admin/app.js', '/admin/app.css']) {
    const response = await fetch(`${console.origin}${asset}`)
    t.equal(response.status, 200, asset)
    t.equal(response.headers.get('content-security-policy'), csp)
  }

  await console.signIn(admin)
  await console.waitForText('#ov-connected', '0')
  t.equal(await console.page.evaluate(() => sessionStorage.getItem('herald.adminToken')), admin, 'the token is in sessionStorage')
  t.equal(await console.page.evaluate(() => localStorage.length), 0, 'nothing in localStorage')
  t.same(await console.page.cookies(), [], 'no cookie')
  t.notOk(console.page.url().includes(admin), 'never in the URL')

  for (const name of pages) {
    await console.show(name)
    await console.page.waitForSelector('h1')
  }
  // a reload keeps the session of this tab
  await console.page.reload()
  await console.page.waitForSelector('#page-buckets')

  // messages between the overview's polls: its rates and chart follow them
  const alice = sign({ sub: 'alice' })
  const device = await connect(t, broker.mqttUrl, { clientId: 'alice-phone', password: alice })
  await device.subscribeAsync('users/alice/#', { qos: 1 })
  const polled = async (): Promise<unknown> => await console.page.waitForResponse((response) => response.url().endsWith('/v1/admin/overview'))
  await console.show('overview')
  for (const batch of [20, 60, 40]) {
    await polled()
    await Promise.all(Array.from({ length: batch }, async (_, i) => await api(broker, 'POST', '/v1/publish', { token: alice, body: { topic: 'users/alice/news', payload: String(i), qos: 1 } })))
  }
  await polled()
  await console.page.waitForFunction(() => Number(document.querySelector('#ov-rate-in')?.textContent) > 0 && Number(document.querySelector('#ov-rate-out')?.textContent) > 0)
  await console.waitForText('#ov-connected', '1')
  await console.page.waitForSelector('.chart canvas')
  await console.screenshot('overview')

  t.same(console.foreign, [], 'no request to any origin but Herald')
  t.same(await console.cspViolations(), [], 'no Content-Security-Policy violation')
  t.same(console.pageErrors, [], 'no error in the page')
  t.same(console.dialogs, [])

  await console.page.click('nav .signout')
  await console.page.waitForSelector('#token')
  t.equal(await console.page.evaluate(() => sessionStorage.length), 0, 'signing out forgets the token')
})

t.test('a token that is not an admin\'s gets the sign-in page: 403 for a device, 401 for an invalid one; a refused stored token signs out', async (t) => {
  const broker = await startBroker(t)
  const console = await openConsole(t, broker)
  const device = sign({ sub: 'alice' })
  const service = sign({ sub: 'backend', role: 'service' })

  t.equal((await api(broker, 'GET', '/v1/admin/overview')).status, 401, 'the API: no token, 401')
  t.equal((await api(broker, 'GET', '/v1/admin/overview', { token: 'not-a-jwt' })).status, 401, 'an invalid token, 401')
  t.equal((await api(broker, 'GET', '/v1/admin/overview', { token: device })).status, 403, 'a device, 403')

  await console.page.goto(`${console.origin}/admin`)
  for (const [token, answer] of [[device, /not an admin.*403 NOT_AUTHORIZED/], [service, /not an admin/], ['not-a-jwt', /401 TOKEN_INVALID/]] as const) {
    const refused = console.page.waitForResponse((response) => response.url().endsWith('/v1/admin/overview'))
    await console.fill('#token', token)
    await console.page.click('#signin button[type=submit]')
    const response = await refused
    t.equal(response.status(), token === 'not-a-jwt' ? 401 : 403)
    await console.page.waitForSelector('.error')
    t.match(await console.page.$eval('.error', (e) => e.textContent), answer)
    t.equal(await console.page.$('nav'), null, 'still the sign-in page')
    t.equal(await console.page.evaluate(() => sessionStorage.length), 0, 'nothing kept')
    await console.screenshot('signin-refused')
  }

  // a device token put in the tab's storage by hand: the first API call is refused and the console signs out
  await console.page.evaluate((token) => { sessionStorage.setItem('herald.adminToken', token) }, device)
  const clients = console.page.waitForResponse((response) => response.url().includes('/v1/admin/clients'))
  await console.page.goto(`${console.origin}/admin/#/clients`)
  t.equal((await clients).status(), 403, 'the clients page asked, and was refused')
  await console.page.waitForSelector('main.signin .error')
  t.match(await console.page.$eval('main.signin .error', (e) => e.textContent), /403 NOT_AUTHORIZED/)
  t.equal(await console.page.evaluate(() => sessionStorage.length), 0, 'the refused token is forgotten')
  t.same(console.foreign, [])
  t.same(console.dialogs, [])
})

t.test('with TLS on, the console is served on the HTTPS port too and works there', async (t) => {
  const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))
  const broker = await startBroker(t, { overrides: { tls: { certFile: fixture('cert.pem'), keyFile: fixture('key.pem'), mqttPort: 0, httpsPort: 0 } } })
  const console = await openConsole(t, broker, { https: true })
  t.match(console.origin, /^https:/)
  const served = await console.page.goto(`${console.origin}/admin`)
  t.match(served?.headers()['content-security-policy'], /default-src 'self'/)
  await console.signIn(admin)
  await console.waitForText('#ov-connected', '0')
  await console.show('clients')
  await console.waitForText('#clients-total', '0 connected')
  t.same(console.foreign, [], 'everything from the HTTPS origin')
  t.same(await console.cspViolations(), [])
  t.same(console.pageErrors, [])
})
