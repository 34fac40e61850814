/**
 * The admin console's files over plain HTTP: what /admin serves, with which
 * headers, and nothing else under /admin (the browser tests are
 * test/e2e/console-*.test.ts).
 */
import { readdir, readFile } from 'node:fs/promises'
import t from 'tap'
import { startBroker } from '../helpers/broker.js'
import { ensureConsoleBuilt } from '../helpers/browser.js'

t.test('/admin serves the page, its script and stylesheet with a self-only CSP; nothing else is there', async (t) => {
  ensureConsoleBuilt()
  const broker = await startBroker(t)
  const base = `http://127.0.0.1:${broker.ports.http}`
  const files: Array<[string, RegExp]> = [
    ['/admin', /^text\/html/],
    ['/admin/', /^text\/html/],
    ['/admin/app.js', /^text\/javascript/],
    ['/admin/app.css', /^text\/css/],
  ]
  for (const [path, type] of files) {
    const response = await fetch(`${base}${path}`)
    t.equal(response.status, 200, path)
    t.match(response.headers.get('content-type'), type, `${path}: content type`)
    t.equal(response.headers.get('content-security-policy'), "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    t.equal(response.headers.get('x-content-type-options'), 'nosniff')
    t.equal(response.headers.get('referrer-policy'), 'no-referrer')
    t.notOk(response.headers.has('set-cookie'), 'no cookie')
  }
  const page = await (await fetch(`${base}/admin`)).text()
  t.match(page, /<script type="module" src="\/admin\/app\.js"><\/script>/)
  t.notMatch(page, /<script>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler in the page')
  t.notMatch(page, /https?:\/\//, 'no other origin named')
  // the console's own code never sets HTML from a string (Preact, bundled with it, implements dangerouslySetInnerHTML: unused)
  for (const file of await readdir(new URL('../../web/src/', import.meta.url), { recursive: true })) {
    if (!file.endsWith('.js')) continue
    const source = await readFile(new URL(`../../web/src/${file}`, import.meta.url), 'utf8')
    t.notMatch(source, /dangerouslySetInnerHTML|innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/, `web/src/${file}: no HTML from strings`)
  }

  for (const path of ['/admin/index.js', '/admin/../package.json', '/admin/%2e%2e/package.json', '/admin/app.js.map', '/admin/x']) {
    const response = await fetch(`${base}${path}`)
    t.equal(response.status, 404, `${path}: not found`)
  }
  t.equal((await fetch(`${base}/admin/app.js`, { method: 'POST' })).status, 404, 'GET only')
  const openapi = await (await fetch(`${base}/v1/openapi.json`)).json() as { paths: Record<string, unknown> }
  t.same(Object.keys(openapi.paths).filter((path) => path.startsWith('/admin')), [], 'not in the API document')
})
