import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { Redis } from 'ioredis'
import { makeTempDir, type Teardown } from './broker.js'

/** A redis-server this test started: its own port on 127.0.0.1, its own temp dir, no persistence. */
export interface TestRedis {
  readonly url: string
  readonly port: number
  readonly process: ChildProcess
  /** A client for the test's own checks, closed at teardown. */
  client (): Redis
  /** Stops the server (SIGKILL when `kill`), e.g. to test a lost Redis; teardown does it otherwise. */
  stop (options?: { kill?: boolean }): Promise<void>
  /** Starts it again on the same port (empty: nothing was saved). */
  restart (): Promise<void>
}

/** Debian's redis-server; `.ci/run` installs it when missing. */
export const REDIS_SERVER = 'redis-server'

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

/**
 * Starts `redis-server` on a free loopback port with `--save '' --appendonly no`,
 * in a temp dir, and stops it at teardown. Resolves once it accepts connections.
 */
export async function startRedis (t: Teardown): Promise<TestRedis> {
  const dir = await makeTempDir(t, 'herald-redis-')
  const port = await freePort()
  let child: ChildProcess
  const clients: Redis[] = []

  async function launch (): Promise<void> {
    child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'notice'], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stderr?.resume()
    const failed = once(child, 'exit').then(([code]) => { throw new Error(`redis-server exited with ${String(code)} before it was ready`) })
    await Promise.race([readyLine(child), failed])
    child.stdout?.resume()
  }

  async function stop ({ kill = false } = {}): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill(kill ? 'SIGKILL' : 'SIGTERM')
    await exited
  }

  await launch()
  t.teardown(async () => {
    await Promise.all(clients.map(async (c) => await c.quit().catch(() => c.disconnect())))
    await stop({ kill: true })
  })
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get process () { return child },
    client () {
      const c = new Redis(port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 })
      clients.push(c)
      return c
    },
    stop,
    restart: launch,
  }
}

/** Resolves when redis-server logs that it accepts connections. */
async function readyLine (child: ChildProcess): Promise<void> {
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  for await (const line of lines) {
    if (line.includes('Ready to accept connections')) {
      lines.close()
      return
    }
  }
}
