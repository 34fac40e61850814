import { execFileSync } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import type { Teardown, TestBroker } from './broker.js'

// The admin console in a real browser: Debian's chromium, headless, driven by
// puppeteer-core. Every request to an origin other than Herald's is recorded
// and refused, every dialog (alert from an injected script) recorded and
// dismissed, and every Content-Security-Policy violation recorded.

/** The system browser (.ci/run installs Debian's `chromium`). */
export const CHROMIUM = process.env.HERALD_TEST_CHROMIUM ?? '/usr/bin/chromium'
const root = fileURLToPath(new URL('../../', import.meta.url))
/** Screenshots of each page (not committed). */
export const SCREENSHOT_DIR = `${root}test-output/console/`

let built = false

/** Builds dist/console when it is older than web/ (npm test builds it first; a single test file run may not have). */
export function ensureConsoleBuilt (): void {
  if (built) return
  execFileSync(process.execPath, [`${root}web/build.mjs`, '--if-stale'], { stdio: 'inherit' })
  built = true
}

export interface ConsoleBrowser {
  readonly browser: Browser
  readonly page: Page
  /** Herald's HTTP origin, e.g. http://127.0.0.1:40123 */
  readonly origin: string
  /** URLs of requests to any other origin (refused). */
  readonly foreign: string[]
  /** Messages of dialogs that opened (alert, confirm, prompt). */
  readonly dialogs: string[]
  /** Uncaught errors in the page. */
  readonly pageErrors: string[]
  /** Content-Security-Policy violations the page reported. */
  cspViolations (): Promise<string[]>
  /** Opens /admin and signs in with the token; resolves once the console's navigation shows. */
  signIn (token: string): Promise<void>
  /** Opens a page by its hash route and waits for it. */
  show (name: string): Promise<void>
  /** Waits until the element's text contains `text`. */
  waitForText (selector: string, text: string): Promise<void>
  /** Clicks the first element matching `selector` whose text contains `text`. */
  clickText (selector: string, text: string): Promise<void>
  /** Sets a form field's value as typing would (input and change events). */
  fill (selector: string, value: string): Promise<void>
  /** Saves test-output/console/<name>.png at 1280x800. */
  screenshot (name: string): Promise<void>
}

/**
 * A headless chromium on a 1280x800 page, closed at teardown. With `https`,
 * the console is opened on the broker's HTTPS listener (the test certificate
 * is for localhost and self-signed: the browser is told to accept it).
 */
export async function openConsole (t: Teardown, broker: TestBroker, options: { https?: boolean } = {}): Promise<ConsoleBrowser> {
  ensureConsoleBuilt()
  const origin = options.https === true ? `https://localhost:${broker.ports.https ?? 0}` : `http://127.0.0.1:${broker.ports.http}`
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
    acceptInsecureCerts: options.https === true,
  })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 800 })
  page.setDefaultTimeout(15_000)

  const foreign: string[] = []
  const dialogs: string[] = []
  const pageErrors: string[] = []
  await page.setRequestInterception(true)
  page.on('request', (request) => {
    if (request.url().startsWith(`${origin}/`)) void request.continue()
    else {
      foreign.push(request.url())
      void request.abort()
    }
  })
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message())
    void dialog.dismiss()
  })
  page.on('pageerror', (error) => { pageErrors.push(String(error)) })
  // runs before the page's own scripts, outside its CSP
  await page.evaluateOnNewDocument(() => {
    const w = window as unknown as { cspViolations: string[] }
    w.cspViolations = []
    document.addEventListener('securitypolicyviolation', (event) => { w.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`) })
  })

  const console: ConsoleBrowser = {
    browser,
    page,
    origin,
    foreign,
    dialogs,
    pageErrors,
    cspViolations: async () => await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations),
    async signIn (token) {
      await page.goto(`${origin}/admin`)
      await page.waitForSelector('#token')
      await console.fill('#token', token)
      await page.click('#signin button[type=submit]')
      await page.waitForSelector('nav')
    },
    async show (name) {
      await page.evaluate((hash) => { location.hash = hash }, `#/${name}`)
      await page.waitForSelector(`#page-${name}`)
    },
    async waitForText (selector, text) {
      await page.waitForFunction((s, x) => document.querySelector(s)?.textContent?.includes(x) === true, {}, selector, text)
    },
    async clickText (selector, text) {
      await page.waitForFunction((s, x) => [...document.querySelectorAll(s)].some((e) => e.textContent?.includes(x) === true), {}, selector, text)
      await page.evaluate((s, x) => {
        const element = [...document.querySelectorAll<HTMLElement>(s)].find((e) => e.textContent?.includes(x) === true)
        element?.click()
      }, selector, text)
    },
    async fill (selector, value) {
      await page.waitForSelector(selector)
      await page.$eval(selector, (element, v) => {
        const field = element as HTMLInputElement
        // the prototype's setter: Preact reads the value the browser holds, as after typing
        const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(field), 'value')?.set
        setter?.call(field, v)
        field.dispatchEvent(new Event('input', { bubbles: true }))
        field.dispatchEvent(new Event('change', { bubbles: true }))
      }, value)
    },
    async screenshot (name) {
      await mkdir(SCREENSHOT_DIR, { recursive: true })
      await page.screenshot({ path: `${SCREENSHOT_DIR}${name}.png` })
    },
  }
  return console
}
