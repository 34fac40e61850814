import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { HeraldError } from '../errors/index.js'

/**
 * The admin console at `/admin`: one page, one script, one stylesheet, built
 * from web/ into dist/console at `npm run build` and shipped in the package.
 * The page holds no data: it signs in with a pasted admin JWT and calls the
 * documented `/v1` API like any other client, so these routes need no token.
 *
 * The Content-Security-Policy allows this origin only and no inline script or
 * style: a string from a device that somehow became markup could neither run
 * nor load anything (Preact renders every value as text in the first place).
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const files: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
}

/** dist/console from dist/src/http (the package) or from src/http (a checkout running TypeScript). */
function consoleDir (): string | undefined {
  for (const candidate of ['../../console/', '../../dist/console/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url))
    if (existsSync(`${dir}index.html`)) return dir
  }
  return undefined
}

async function sendFile (reply: FastifyReply, name: string): Promise<FastifyReply> {
  // looked up on each request: a rebuilt console is served without a restart
  const dir = consoleDir()
  if (dir === undefined) throw new HeraldError('NOT_FOUND', 'the admin console is not built: run npm run build')
  const body = await readFile(`${dir}${name}`)
  return await reply
    .header('content-type', files[name])
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    .header('cache-control', 'no-cache')
    .send(body)
}

export function registerConsole (app: FastifyInstance): void {
  // static files: out of the OpenAPI document and of http.rateLimit (the API calls the page makes are limited)
  const options = { schema: { hide: true }, config: { rateLimit: false } }
  for (const path of ['/admin', '/admin/']) app.get(path, options, async (_request, reply) => await sendFile(reply, 'index.html'))
  app.get('/admin/app.js', options, async (_request, reply) => await sendFile(reply, 'app.js'))
  app.get('/admin/app.css', options, async (_request, reply) => await sendFile(reply, 'app.css'))
}
