import { EventEmitter, once } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect, createSecureServer, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Teardown } from './broker.js'

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url))

/**
 * An HTTP/2 + TLS hop between one Herald node and the APNs fake, so that a test
 * can tell that node's requests from the others' and hold its answers.
 *
 * Every request goes on to the fake at once (the fake records it and answers);
 * the answer comes back to the node at once, or, while `hold()` is in force,
 * is kept until `release()`. A held request is thus what a real provider may
 * already have delivered while the node does not know it: what a node killed
 * at that moment may see sent twice.
 */
export interface ApnsProxy {
  /** Where the node sends (`push.apns.port`, host `localhost`). */
  readonly port: number
  /** Requests the node sent whose answer it has not had (at the fake, or held here). */
  readonly open: number
  /** Of those, the ones the fake answered and this proxy holds. */
  readonly held: number
  /** Device token → how many 200 answers reached the node. */
  readonly delivered: ReadonlyMap<string, number>
  /** Failures between the proxy and the fake (a test expects none). */
  readonly errors: readonly string[]
  hold (): void
  release (): void
  /** Resolves once `check()` is true; checked now and after every change. */
  until (check: () => boolean): Promise<void>
}

export async function startApnsProxy (t: Teardown, upstreamPort: number): Promise<ApnsProxy> {
  const changes = new EventEmitter()
  changes.setMaxListeners(0)
  const changed = (): void => { changes.emit('change') }
  const delivered = new Map<string, number>()
  const errors: string[] = []
  const waiting: Array<() => void> = []
  let holding = false
  let open = 0
  let held = 0

  // The fake announces one stream until a request authenticates: let its SETTINGS
  // arrive before the first request, so Node queues the rest instead of having them refused.
  const upstream: ClientHttp2Session = connect(`https://localhost:${upstreamPort}`, { ca: readFileSync(fixture('cert.pem')) })
  upstream.on('error', (err) => { errors.push(`upstream session: ${err.message}`); changed() })
  await once(upstream, 'remoteSettings')

  const server = createSecureServer({ key: readFileSync(fixture('key.pem')), cert: readFileSync(fixture('cert.pem')) })
  const sessions = new Set<ServerHttp2Session>()
  server.on('session', (session) => {
    sessions.add(session)
    session.on('close', () => sessions.delete(session))
    // a killed node leaves its session in any state
    session.on('error', () => {})
  })

  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const chunks: Buffer[] = []
    let answered = false
    stream.on('error', () => {})
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('end', () => {
      open++
      changed()
      // the node went away before its answer: the request stays counted as what it had in flight until then
      stream.on('close', () => { if (!answered) { answered = true; open--; changed() } })
      const request = upstream.request(forwarded(headers))
      request.end(Buffer.concat(chunks))
      const reply: Buffer[] = []
      let status = 0
      let replyHeaders: OutgoingHttpHeaders = {}
      request.on('response', (h) => {
        status = Number(h[':status'])
        replyHeaders = forwarded(h, [])
      })
      request.on('data', (chunk: Buffer) => reply.push(chunk))
      request.on('error', (err) => { errors.push(`upstream stream: ${err.message}`); changed() })
      request.on('end', () => {
        const answer = (): void => {
          if (answered || stream.destroyed) return
          answered = true
          open--
          if (status === 200) {
            const token = /^\/3\/device\/([^/?]*)$/.exec(String(headers[':path']))?.[1] ?? ''
            delivered.set(token, (delivered.get(token) ?? 0) + 1)
          }
          const body = Buffer.concat(reply)
          stream.respond({ ...replyHeaders, ':status': status }, { endStream: body.length === 0 })
          if (body.length > 0) stream.end(body)
          changed()
        }
        if (!holding) return answer()
        held++
        changed()
        waiting.push(() => { held--; answer() })
      })
    })
  })

  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    holding = false
    for (const go of waiting.splice(0)) go()
    const closed = once(server, 'close')
    server.close()
    for (const session of sessions) session.destroy()
    upstream.destroy()
    await closed
  })

  return {
    port: (server.address() as AddressInfo).port,
    get open () { return open },
    get held () { return held },
    delivered,
    errors,
    hold () { holding = true },
    release () {
      holding = false
      for (const go of waiting.splice(0)) go()
    },
    async until (check) {
      if (check()) return
      await new Promise<void>((resolve) => {
        const look = (): void => {
          if (!check()) return
          changes.off('change', look)
          resolve()
        }
        changes.on('change', look)
      })
    },
  }
}

/** The headers to pass on: the regular ones, and of the pseudo-headers only those named. */
function forwarded (headers: IncomingHttpHeaders, pseudo: readonly string[] = [':method', ':path']): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    if (name.startsWith(':') && !pseudo.includes(name)) continue
    out[name] = value
  }
  return out
}
